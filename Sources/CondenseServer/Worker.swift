import Foundation

/// A thread of its own for blocking compute (the kernels), outside Swift concurrency's
/// cooperative pool and NIO's event loops, fed under a condition variable. ``shutdown()`` lets it
/// finish what is queued and return.
public class Worker: @unchecked Sendable {
    // @unchecked: subclasses keep their queues, and `stopped`, under `cond`.
    let cond = NSCondition()
    var stopped = false

    /// Starts ``run()`` on a new thread.
    func start(name: String) {
        let t = Thread { [weak self] in self?.run() }
        t.name = name
        t.start()
    }

    /// The thread's loop: returns once stopped with nothing left to do.
    func run() {}

    /// Refuses new work; the thread finishes what it holds and returns.
    public func shutdown() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }
}

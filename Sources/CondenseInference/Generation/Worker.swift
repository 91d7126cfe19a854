import Foundation

/// A thread of its own for blocking compute (the kernels), outside Swift concurrency's
/// cooperative pool and a server's event loops, fed under a condition variable. ``shutdown()``
/// lets it finish what is queued and return. Subclass it and override ``run()``.
///
/// ```swift
/// final class Echo: Worker, @unchecked Sendable { override func run() { /* wait on cond, work, repeat */ } }
/// ```
open class Worker: @unchecked Sendable {
    // @unchecked: subclasses keep their queues, and `stopped`, under `cond`.
    public let cond = NSCondition()
    public var stopped = false

    /// A worker whose thread starts with ``start(name:)``.
    public init() {}

    /// Starts ``run()`` on a new thread.
    public func start(name: String) {
        let t = Thread { [weak self] in self?.run() }
        t.name = name
        t.start()
    }

    /// The thread's loop: returns once stopped with nothing left to do.
    open func run() {}

    /// Refuses new work; the thread finishes what it holds and returns.
    public func shutdown() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }
}

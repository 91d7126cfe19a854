import CCondenseKernels
import Condense
import Foundation
import Testing

/// The persistent thread team every kernel runs on: barriers hold, a nested job runs alone, and
/// callers on several threads at once each get their job done (one on the team, the others alone),
/// with kernels giving the same results as on one thread.
@Suite struct ThreadTeamTests {
    @Test func barriersAndNestingOnOneCaller() {
        for nt in [1, 2, 3, 4, 7] {
            #expect(condense_team_check(Int32(nt), 50) == 0, "nt=\(nt)")
        }
    }

    @Test func concurrentCallersEachFinish() async {
        await withTaskGroup(of: Int32.self) { group in
            for i in 0..<8 { group.addTask { condense_team_check(Int32(2 + i % 3), 200) } }
            for await r in group { #expect(r == 0) }
        }
    }

    @Test func concurrentGEMMsMatchOneThread() async throws {
        let w = randomMatrix(200, 300, seed: 31)
        let layer = try LinearLayer(weights: .dense(w))
        let one = try NativeBackend(threads: 1).prepare(layer), two = try NativeBackend(threads: 2).prepare(layer)
        let xs = (0..<6).map { randomMatrix(1 + $0 * 7, 300, seed: UInt64(40 + $0)) }
        let want = try xs.map { try one.apply($0) }
        try await withThrowingTaskGroup(of: (Int, Matrix<Float>).self) { group in
            for _ in 0..<4 {
                for (i, x) in xs.enumerated() { group.addTask { (i, try two.apply(x)) } }
            }
            for try await (i, y) in group {
                let worst = zip(y.elements, want[i].elements).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= 1e-4, "input \(i): \(worst)")
            }
        }
    }
}

import Dispatch
import Foundation

/// Runs `body(0..<count)` on `count` threads of their own, all at once, and
/// waits for them. Unlike `DispatchQueue.concurrentPerform`, which runs only
/// as many iterations at a time as there are cores, every iteration really is
/// concurrent, which blocking network calls need (Redlock's nodes, the
/// benchmark's and the tests' client threads).
package func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.start()
    }
    group.wait()
}

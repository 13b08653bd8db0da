import CLinuxEvents
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

/// Starts `body` on a thread of its own named `name`, where the system
/// shows it (`top -H`, `perf`, `gdb`, `/proc/self/task/*/comm`).
/// Foundation on Linux passes a name set before `start()` to
/// `Thread.current.name` only, so the thread names itself first
/// (`PR_SET_NAME`; the kernel keeps 15 bytes of it).
package func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        _ = baldur_name_this_thread(name)
        body()
    }
    thread.name = name
    thread.start()
}

import Foundation
import Synchronization

/// Bounded busy-polling for a reply before a connection sleeps in `read(2)`.
///
/// A synchronous call spends almost all of its time waiting for the reply.
/// Sleeping in `read(2)` lets the CPU go idle, and waking an idle CPU is the
/// dominant cost of a loopback round trip on virtual machines: measured here
/// (2 vCPUs, Firecracker), a blocking hiredis loop in C does ~5,500 `GET`/s on
/// one connection, and the same loop polling the socket for up to 50 µs
/// before blocking does ~20,000/s. This is the user-space form of the
/// kernel's `busy_poll` and of guest halt-polling.
///
/// The spinning is kept to where it pays and bounded where it does not:
/// - at most ``RedisConfiguration/Pool/spinWait`` per reply, then the ordinary
///   blocking read;
/// - only while few threads of this process are inside Redis calls
///   (``maxSpinners``): pooled connections checked out, or direct
///   connections awaiting replies. Once several are, the CPUs are busy,
///   wake-ups are cheap and a spinning thread would only take CPU from the
///   others and from the server (measured: 16 threads on 2 CPUs lost 60% of
///   their throughput when a lone waiter among them spun);
/// - a connection whose replies outlast the budget (slow scripts, blocking
///   commands) stops spinning for exponentially more calls, up to 256.
///
/// A thread parked in a long blocking command (a lock waiter's `BLPOP`)
/// holds a checked-out connection, so while it waits the others count it as
/// busy and spin less: the safe direction.
struct ReplySpin {
    /// Threads of this process between sending a request and taking its reply.
    static let awaiting = Atomic<Int>(0)
    /// Pooled connections checked out by callers, across every pool of the process.
    static let connectionsInUse = Atomic<Int>(0)
    /// How many awaiting threads may spin at once: a quarter of the CPUs, at least one.
    static let maxSpinners = max(1, ProcessInfo.processInfo.activeProcessorCount / 4)

    /// The longest spin per reply; `.zero` disables spinning.
    let budget: Duration
    /// Calls left before this connection spins again after a miss.
    private var cooldown = 0
    /// Consecutive misses; the cooldown doubles with each.
    private var missStreak = 0
    /// Replies that arrived while spinning (for tests and diagnostics).
    private(set) var hits = 0
    /// Budgets that ran out before the reply came.
    private(set) var misses = 0

    init(budget: Duration) {
        self.budget = max(.zero, budget)
    }

    /// Waits until `descriptor` is readable or the budget is spent, when
    /// spinning is allowed at all. The caller reads the reply next either way.
    ///
    /// - Parameter busyCallers: How many threads of the process are inside
    ///   Redis calls now, this one included.
    mutating func awaitReadable(_ descriptor: Int32, busyCallers: Int) {
        guard budget > .zero, busyCallers <= Self.maxSpinners else { return }
        if cooldown > 0 {
            cooldown -= 1
            return
        }
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let deadline = ContinuousClock.now + budget
        repeat {
            // Readable, or hung up / failed: either way the read that follows returns at once.
            if poll(&poller, 1, 0) != 0 {
                hits += 1
                missStreak = 0
                return
            }
        } while ContinuousClock.now < deadline
        misses += 1
        missStreak += 1
        cooldown = 1 << min(missStreak, 8)  // 2, 4, ... 256 calls
    }
}

/// The decisions of a `getOrSet` miss, without I/O: whether this caller
/// computes the value (elected by the `singleflight:lock:<key>` lock, or
/// failing open), waits for the fleet's winner, or gives up waiting. The
/// blocking ``CacheProvider/getOrSet(_:as:ttl:lockTimeout:waitTimeout:factory:)``
/// and the async one drive the same plan, one sleeping its thread, the
/// other suspending.
///
/// - The first step tries the lock without waiting (`SET NX`).
/// - A loser polls the value every ~50 ms (±20% jitter, so a fleet's
///   losers do not poll in step) and tries the lock again whenever the
///   value is still missing, so a crashed winner is replaced.
/// - Once `waitTimeout` has passed since the election was lost: one last
///   look at the value, then the caller computes it itself.
/// - A backend failure (``RedisError``) while electing or polling fails
///   open: the caller computes the value itself, as Python Baldur does.
///   Anything else (cancellation, a graceful shutdown) ends the call.
struct GetOrSetPlan {
    enum Step: Equatable {
        /// Try the lock without waiting; report ``GetOrSetPlan/elected(_:)``.
        case elect
        /// Wait this long, then read the value: return it when found,
        /// else try the lock and report ``GetOrSetPlan/polled(won:)``.
        case poll(after: Duration)
        /// This caller holds the lock: read the value once more (another
        /// winner may have stored it), compute it on a miss, release the lock.
        case computeAsWinner
        /// The wait is over: read the value once more, compute it on a miss.
        case lastLook
        /// Compute and store the value without the lock (failing open).
        case compute
    }

    /// The poll interval, before jitter.
    static let pollInterval = Duration.milliseconds(50)

    let waitTimeout: Duration
    /// When the wait for the winner ends; set when the election is lost.
    private(set) var deadline: ContinuousClock.Instant?

    init(waitTimeout: Duration) {
        self.waitTimeout = waitTimeout
    }

    /// The first step.
    var start: Step { .elect }

    /// The first election's outcome.
    mutating func elected(_ won: Bool) -> Step {
        if won { return .computeAsWinner }
        deadline = .now + waitTimeout
        return nextPoll()
    }

    /// A poll found no value, and tried the lock: `won` or not.
    func polled(won: Bool) -> Step {
        won ? .computeAsWinner : nextPoll()
    }

    /// Electing or polling failed with `error`: fail open on a backend
    /// error; rethrow anything else.
    func failed(_ error: any Error) throws -> Step {
        guard error is RedisError else { throw error }
        return .compute
    }

    private func nextPoll() -> Step {
        guard let deadline, ContinuousClock.now < deadline else { return .lastLook }
        return .poll(after: Self.pollInterval * Double.random(in: 0.8...1.2))
    }
}

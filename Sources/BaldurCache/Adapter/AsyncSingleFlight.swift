/// ``SingleFlight`` for `async` callers: concurrent `getOrSet` misses of one
/// key in this process share one computation; the others suspend (holding
/// no thread) until the leader's result is in.
final class AsyncSingleFlight: Sendable {
    static let shared = AsyncSingleFlight()

    private struct Flight: Sendable {
        var waiters: [CheckedContinuation<any Sendable, any Error>] = []
    }

    private let flights = PlainMutex<[SingleFlight.Key: Flight]>([:])

    /// Runs `body` as the leader of `key`'s flight, or waits for the leader's result.
    func run<T: Sendable>(_ key: SingleFlight.Key, _ body: () async throws -> T) async throws -> T {
        let leader = flights.withLock { flights in
            guard flights[key] == nil else { return false }
            flights[key] = Flight()
            return true
        }
        guard leader else {
            let value = try await withCheckedThrowingContinuation { continuation in
                let joined = flights.withLock { flights in
                    guard flights[key] != nil else { return false }
                    flights[key]!.waiters.append(continuation)
                    return true
                }
                // The leader finished between the check and now: fly again.
                if !joined { continuation.resume(throwing: Retry()) }
            }
            return try SingleFlight.typed(value, as: T.self)
        }
        let outcome: Result<any Sendable, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        let waiters = flights.withLock { $0.removeValue(forKey: key)?.waiters ?? [] }
        for waiter in waiters { waiter.resume(with: outcome) }
        return try SingleFlight.typed(outcome.get(), as: T.self)
    }

    /// A waiter arrived as its flight landed; it retries from the start.
    struct Retry: Error {}
}

import Dispatch
import Synchronization

/// In-process single-flight: concurrent calls with the same key share one execution.
final class SingleFlight: Sendable {
    static let shared = SingleFlight()

    /// What makes two calls the same flight.
    struct Key: Hashable, Sendable {
        let provider: ObjectIdentifier
        let synthetic: Bool
        let key: String
        /// The result type: calls for different types never share a result.
        let type: ObjectIdentifier
    }

    private final class Call: Sendable {
        let done = DispatchSemaphore(value: 0)
        let outcome = PlainMutex<Result<any Sendable, any Error>?>(nil)
    }

    private let calls = PlainMutex<[Key: (call: Call, waiters: Int)]>([:])

    func run<T: Sendable>(_ key: Key, _ body: () throws -> T) throws -> T {
        let (call, leader) = calls.withLock { calls -> (Call, Bool) in
            if let entry = calls[key] {
                calls[key]!.waiters += 1
                return (entry.call, false)
            }
            let call = Call()
            calls[key] = (call, 0)
            return (call, true)
        }
        if leader {
            let outcome: Result<any Sendable, any Error>
            do { outcome = .success(try body()) } catch { outcome = .failure(error) }
            call.outcome.withLock { $0 = outcome }
            let waiters = calls.withLock { $0.removeValue(forKey: key)?.waiters ?? 0 }
            for _ in 0..<waiters { call.done.signal() }
            return try Self.typed(outcome.get(), as: T.self)
        }
        call.done.wait()
        return try Self.typed(call.outcome.withLock { $0! }.get(), as: T.self)
    }

    /// The shared result as `T`. The key holds the type, so this cannot
    /// fail; if it ever did, it is an error, not a trap.
    static func typed<T>(_ value: any Sendable, as type: T.Type) throws(RedisError) -> T {
        guard let typed = value as? T else {
            throw RedisError(.decoding, "a shared getOrSet result of type \(Swift.type(of: value)) is not a \(T.self)")
        }
        return typed
    }
}

extension CacheLockProvider {
    /// What the blocking and the `async` `getOrSet` check first: both
    /// timeouts in range. Returns where its hits, misses and span go.
    func getOrSetTelemetry(lockTimeout: Duration, waitTimeout: Duration) throws(RedisError) -> Telemetry {
        _ = try lockTimeout.checked("getOrSet's lockTimeout", in: .milliseconds(1)...Duration.longestAccepted)
        _ = try waitTimeout.checked("getOrSet's waitTimeout", in: .zero...Duration.longestAccepted)
        return (self as? RedisCacheAdapter)?.rawClient.telemetry ?? .disabled
    }

    /// The flight a `getOrSet` miss of `key` as `T` joins. Callers share a
    /// flight only when they would share its result: same provider, same
    /// scope, same key and the same type (a String caller must not be
    /// handed an Int leader's value).
    func getOrSetFlight<T>(_ key: String, as type: T.Type) -> SingleFlight.Key {
        SingleFlight.Key(provider: ObjectIdentifier(self), synthetic: SyntheticMode.isActive, key: key, type: ObjectIdentifier(T.self))
    }
}

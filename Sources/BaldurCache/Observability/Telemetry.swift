import CoreMetrics
import Tracing

/// The metrics and spans of one client, made once from its
/// ``RedisObservability``: what the connection core, the lock and the adapter
/// report through.
///
/// With no backend bootstrapped (the no-op metrics factory and tracer),
/// ``isEnabled`` is `false` and every call site skips its work after one
/// branch. Metric objects are made once per label set and cached, so a
/// command costs a dictionary lookup, not a factory call.
final class Telemetry: Sendable {
    let metricsEnabled: Bool
    let tracingEnabled: Bool
    /// `true` when either metrics or spans are recorded.
    let isEnabled: Bool
    private let factory: any MetricsFactory
    private let tracer: any Tracer
    private let recordsKeys: Bool
    /// `db.system.name`, `server.address`, `server.port`: on every metric and span.
    private let serverDimensions: [(String, String)]
    /// The port as a number, for span attributes.
    private let port: Int?
    private let database: String
    private let commands = PlainMutex<[String: CommandMetrics]>([:])
    private let errors = PlainMutex<[String: Counter]>([:])
    private let cacheLookups = PlainMutex<[String: (hits: Counter, misses: Counter)]>([:])
    /// Lock counters, made on first use.
    private let lockMetrics = PlainMutex<LockMetrics?>(nil)

    private struct CommandMetrics: Sendable {
        let duration: Timer
        let calls: Counter
    }

    private struct LockMetrics: Sendable {
        let acquired: Counter
        let contended: Counter
        let lost: Counter
        let handoff: Timer
    }

    init(_ observability: RedisObservability, server: RedisServerAddress?, database: Int) {
        factory = observability.metrics ?? MetricsSystem.factory
        tracer = observability.tracer ?? InstrumentationSystem.tracer
        metricsEnabled = !(factory is NOOPMetricsHandler)
        tracingEnabled = !(tracer is NoOpTracer)
        isEnabled = metricsEnabled || tracingEnabled
        recordsKeys = observability.recordsKeys
        var dimensions = [("db.system.name", "redis")]
        switch server {
        case .tcp(let host, let port)?:
            dimensions += [("server.address", host), ("server.port", String(port))]
            self.port = port
        case .unix(let path)?:
            dimensions += [("server.address", path)]
            self.port = nil
        case nil:
            self.port = nil
        }
        serverDimensions = dimensions
        self.database = String(database)
    }

    /// Reports nothing: for stores and tests that have no client.
    static let disabled = Telemetry(RedisObservability(metrics: NOOPMetricsHandler.instance, tracer: NoOpTracer()), server: nil, database: 0)

    // MARK: - Commands

    /// Runs `body`, one command or pipeline named `operation`, in a client
    /// span, and records its duration, the call and, when `failure` finds
    /// one in the result or `body` throws, the error by code.
    ///
    /// - Parameters:
    ///   - operation: `db.operation.name`: the command's name in upper case,
    ///     or `PIPELINE`.
    ///   - batchSize: For a pipeline, how many commands it sends.
    ///   - key: The key, recorded only when the observability asks for it.
    func command<R>(
        _ operation: String, batchSize: Int? = nil, key: RedisArgument? = nil,
        failure: (R) -> RedisError? = { _ in nil },
        _ body: () throws(RedisError) -> R
    ) throws(RedisError) -> R {
        let span = tracingEnabled ? startSpan(operation, batchSize: batchSize, key: key) : nil
        let start = ContinuousClock.now
        let outcome: Result<R, RedisError>
        do { outcome = .success(try body()) } catch { outcome = .failure(error) }
        let error: RedisError? = switch outcome {
        case .success(let value): failure(value)
        case .failure(let thrown): thrown
        }
        if metricsEnabled { record(operation, duration: ContinuousClock.now - start, error: error) }
        if let span {
            if let error { Self.mark(span, failedWith: error) }
            span.end()
        }
        return try outcome.get()
    }

    /// Runs `body`, an adapter call that sends several commands, in a span
    /// named `operation`, so that its commands' spans are its children.
    func operation<R, E: Error>(_ operation: String, _ body: () throws(E) -> R) throws(E) -> R {
        guard tracingEnabled else { return try body() }
        let span = startSpan(operation)
        let outcome = ServiceContext.withValue(span.context) { () -> Result<R, E> in
            do throws(E) { return .success(try body()) } catch { return .failure(error) }
        }
        Self.end(span, outcome)
        return try outcome.get()
    }

    /// Ends an operation's span, marked with its error when it failed.
    private static func end<R, E: Error>(_ span: any Span, _ outcome: Result<R, E>) {
        if case .failure(let error) = outcome {
            if let error = error as? RedisError { mark(span, failedWith: error) } else {
                // The caller's own error (a getOrSet factory's): its type, never its text.
                span.attributes["error.type"] = "\(type(of: error))"
                span.setStatus(SpanStatus(code: .error))
            }
        }
        span.end()
    }

    /// ``command(_:batchSize:key:failure:_:)-(_,_,_,_,()throws(RedisError)->R)`` for
    /// async calls: a cancelled call's span gets `error.type` `cancelled`;
    /// its metrics get the duration and the call, but no error code.
    func command<R>(
        _ operation: String, batchSize: Int? = nil, key: RedisArgument? = nil,
        failure: (R) -> RedisError? = { _ in nil },
        _ body: () async throws -> R
    ) async throws -> R {
        let span = tracingEnabled ? startSpan(operation, batchSize: batchSize, key: key) : nil
        let start = ContinuousClock.now
        let outcome: Result<R, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        // A cancelled call is no Redis failure: its duration is recorded, no error code.
        let error: RedisError? = switch outcome {
        case .success(let value): failure(value)
        case .failure(let thrown as RedisError): thrown
        case .failure: nil
        }
        if metricsEnabled { record(operation, duration: ContinuousClock.now - start, error: error) }
        if let span {
            if case .failure(let thrown) = outcome, !(thrown is RedisError) {
                span.attributes["error.type"] = "cancelled"
                span.setStatus(SpanStatus(code: .error))
            } else if let error {
                Self.mark(span, failedWith: error)
            }
            span.end()
        }
        return try outcome.get()
    }

    /// ``operation(_:_:)`` for async calls.
    func operation<R>(_ operation: String, _ body: () async throws -> R) async throws -> R {
        guard tracingEnabled else { return try await body() }
        let span = startSpan(operation)
        let outcome: Result<R, any Error>
        do {
            outcome = .success(try await ServiceContext.withValue(span.context) { try await body() })
        } catch {
            outcome = .failure(error)
        }
        Self.end(span, outcome)
        return try outcome.get()
    }

    /// The command's name as a metric label and span name: upper case when
    /// it looks like a command name (1-32 letters, digits, `_`, `.`, `-`),
    /// otherwise `OTHER`, so that no stray text becomes a label.
    static func operationName(of command: [RedisArgument]) -> String {
        guard let name = command.first else { return "OTHER" }
        return name.withBytes { raw in
            guard (1...32).contains(raw.count), raw.allSatisfy({ byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || byte == 0x5F || byte == 0x2E || byte == 0x2D
            }) else { return "OTHER" }
            return String(decoding: raw, as: UTF8.self).uppercased()
        }
    }

    /// A client span, child of the task's current one, with the server's
    /// attributes and `db.operation.name`.
    private func startSpan(_ operation: String, batchSize: Int? = nil, key: RedisArgument? = nil) -> any Span {
        let span = tracer.startSpan(operation, context: ServiceContext.current ?? .topLevel, ofKind: .client)
        for (name, value) in serverDimensions where name != "server.port" { span.attributes[name] = value }
        if let port { span.attributes["server.port"] = port }
        span.attributes["db.namespace"] = database
        span.attributes["db.operation.name"] = operation
        if let batchSize { span.attributes["db.operation.batch.size"] = batchSize }
        if recordsKeys, let key { span.attributes["baldur.redis.key"] = String(decoding: key.bytes, as: UTF8.self) }
        return span
    }

    private static func mark(_ span: any Span, failedWith error: RedisError) {
        span.attributes["error.type"] = error.prefix ?? error.code.description
        span.recordError(error)
        span.setStatus(SpanStatus(code: .error))
    }

    private func record(_ operation: String, duration: Duration, error: RedisError?) {
        let metrics = commands.withLock { cache in
            if let metrics = cache[operation] { return metrics }
            let dimensions = serverDimensions + [("db.operation.name", operation)]
            let made = CommandMetrics(
                duration: Timer(label: "db.client.operation.duration", dimensions: dimensions, factory: factory),
                calls: Counter(label: "db.client.operations", dimensions: dimensions, factory: factory)
            )
            cache[operation] = made
            return made
        }
        metrics.duration.recordNanoseconds(duration.nanoseconds)
        metrics.calls.increment()
        guard let error else { return }
        let code = error.code.description
        errors.withLock { cache in
            let key = operation + " " + code
            if let counter = cache[key] { return counter }
            let counter = Counter(
                label: "db.client.operation.errors",
                dimensions: serverDimensions + [("db.operation.name", operation), ("error.type", code)], factory: factory
            )
            cache[key] = counter
            return counter
        }.increment()
    }

    // MARK: - Pool

    /// The pool's gauges: connections idle and in use, and callers waiting for one.
    func poolMeters() -> PoolMeters? {
        guard metricsEnabled else { return nil }
        return PoolMeters(
            idle: Meter(label: "db.client.connection.count", dimensions: serverDimensions + [("db.client.connection.state", "idle")], factory: factory),
            used: Meter(label: "db.client.connection.count", dimensions: serverDimensions + [("db.client.connection.state", "used")], factory: factory),
            waiting: Meter(label: "db.client.connection.pending_requests", dimensions: serverDimensions, factory: factory)
        )
    }

    struct PoolMeters: Sendable {
        let idle: Meter
        let used: Meter
        let waiting: Meter
    }

    // MARK: - Near cache

    /// The near cache's counters: hits, misses, invalidations, evictions.
    func nearCacheMeters() -> NearCacheMeters? {
        guard metricsEnabled else { return nil }
        return NearCacheMeters(
            hits: Counter(label: "baldur.near_cache.hits", dimensions: serverDimensions, factory: factory),
            misses: Counter(label: "baldur.near_cache.misses", dimensions: serverDimensions, factory: factory),
            invalidations: Counter(label: "baldur.near_cache.invalidations", dimensions: serverDimensions, factory: factory),
            evictions: Counter(label: "baldur.near_cache.evictions", dimensions: serverDimensions, factory: factory)
        )
    }

    struct NearCacheMeters: Sendable {
        let hits: Counter
        let misses: Counter
        let invalidations: Counter
        let evictions: Counter
    }

    // MARK: - Locks and cache lookups

    /// What a lock acquisition did.
    enum LockEvent {
        /// Acquired; `after` is how long it waited, when it found the lock held first.
        case acquired(after: Duration?)
        /// An acquisition found the lock held and waited (counted once per acquisition).
        case contended
        /// Renewal or release found another owner.
        case lost
    }

    func lock(_ event: LockEvent) {
        guard metricsEnabled else { return }
        let metrics = lockMetrics.withLock { metrics in
            if let metrics { return metrics }
            let made = LockMetrics(
                acquired: Counter(label: "baldur.lock.acquired", dimensions: serverDimensions, factory: factory),
                contended: Counter(label: "baldur.lock.contended", dimensions: serverDimensions, factory: factory),
                lost: Counter(label: "baldur.lock.lost", dimensions: serverDimensions, factory: factory),
                handoff: Timer(label: "baldur.lock.handoff.duration", dimensions: serverDimensions, factory: factory)
            )
            metrics = made
            return made
        }
        switch event {
        case .acquired(let waited):
            metrics.acquired.increment()
            if let waited { metrics.handoff.recordNanoseconds(waited.nanoseconds) }
        case .contended:
            metrics.contended.increment()
        case .lost:
            metrics.lost.increment()
        }
    }

    /// Counts `hits` and `misses` of a cache read (`get`, `mget`, `getOrSet`, ...).
    /// Inlined to its test: a call retained the shared telemetry object on
    /// every near-cache hit, and its reference count bounced between cores.
    @inline(__always)
    func cacheLookup(_ operation: String, hits: Int, misses: Int) {
        if metricsEnabled { countCacheLookup(operation, hits: hits, misses: misses) }
    }

    @inline(never)
    private func countCacheLookup(_ operation: String, hits: Int, misses: Int) {
        let counters = cacheLookups.withLock { cache in
            if let counters = cache[operation] { return counters }
            let dimensions = serverDimensions + [("baldur.cache.operation", operation)]
            let made = (hits: Counter(label: "baldur.cache.hits", dimensions: dimensions, factory: factory),
                        misses: Counter(label: "baldur.cache.misses", dimensions: dimensions, factory: factory))
            cache[operation] = made
            return made
        }
        if hits > 0 { counters.hits.increment(by: hits) }
        if misses > 0 { counters.misses.increment(by: misses) }
    }
}

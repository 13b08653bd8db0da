import CoreMetrics
import Tracing

/// Where a client reports metrics (swift-metrics) and spans
/// (swift-distributed-tracing).
///
/// By default a client uses what the process bootstrapped
/// (`MetricsSystem.bootstrap`, `InstrumentationSystem.bootstrap`) when the
/// client is made; with neither bootstrapped, BaldurCache does no metrics or
/// tracing work at all. Pass backends explicitly to scope them to one client:
///
/// ```swift
/// let client = try RedisClient(configuration: configuration,
///                              observability: RedisObservability(metrics: prometheus, tracer: otelTracer))
/// ```
///
/// Names and attributes follow the OpenTelemetry database conventions; the
/// README lists every metric and span attribute. No key or value ever
/// becomes a metric label. Spans carry no key either, unless
/// ``recordsKeys`` is set.
public struct RedisObservability: Sendable {
    /// The metrics backend; `nil` uses `MetricsSystem.factory`.
    public var metrics: (any MetricsFactory)?
    /// The tracer; `nil` uses `InstrumentationSystem.tracer`.
    public var tracer: (any Tracer)?
    /// Adds the command's first argument after its name (for most commands,
    /// the key) to command spans as `baldur.redis.key`. Off by default: keys
    /// can carry personal data. Values are never recorded.
    public var recordsKeys: Bool

    /// Backends to report to; `nil` for either means the process-wide one.
    public init(metrics: (any MetricsFactory)? = nil, tracer: (any Tracer)? = nil, recordsKeys: Bool = false) {
        self.metrics = metrics
        self.tracer = tracer
        self.recordsKeys = recordsKeys
    }

    /// The process-wide backends, as bootstrapped.
    public static var global: RedisObservability { RedisObservability() }
}

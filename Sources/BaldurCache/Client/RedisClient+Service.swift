import ServiceLifecycle

/// A client is a swift-service-lifecycle `Service`: add it to the
/// `ServiceGroup` beside the services that use it, and a graceful shutdown
/// (SIGTERM) lets the calls in flight get their replies before the
/// connections close.
///
/// ```swift
/// let redis = try RedisClient(url: "redis://127.0.0.1:6379/0")
/// let group = ServiceGroup(services: [redis, httpServer], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
extension RedisClient: Service {
    /// Runs until graceful shutdown is triggered (or the task is
    /// cancelled), then shuts the client down (``shutdown()``): new calls
    /// fail with ``RedisError/Code/closed``, calls in flight finish.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}

import Logging

/// Everything a client holds for one server: one pool, leased two ways.
///
/// - The blocking API takes a connection per calling thread
///   (``ConnectionPool``: up to ``RedisConfiguration/Pool/maxConnections``).
/// - The async API pipelines over a few shared connections and leases
///   dedicated ones for blocking commands and transactions (``EnginePool``).
///
/// Both count failed connects in one ``ConnectBackoff``: once either API
/// has seen the server refuse or time out twice in a row, neither tries a
/// new connect until the back-off passes. A failover retires both at once
/// (``retire(because:)``), and the client closes both at once.
final class ServerPool: Sendable {
    let address: RedisServerAddress
    /// The blocking API's connections.
    let blocking: ConnectionPool
    /// The async API's connections.
    let engine: EnginePool

    init(address: RedisServerAddress, configuration: RedisConfiguration, logger: Logger, telemetry: Telemetry) {
        let connects = SharedConnectBackoff()
        self.address = address
        blocking = ConnectionPool(address: address, configuration: configuration, logger: logger, meters: telemetry.poolMeters(), connects: connects)
        engine = EnginePool(address: address, configuration: configuration, logger: logger, connects: connects)
    }

    /// Connections open now, both APIs', idle or in use.
    var openConnections: Int { blocking.openConnections + engine.openConnections }

    /// For a server that must not be waited on any more (a master a
    /// failover demoted): closes both pools and ends at once the calls in
    /// flight and the connects under way on either, saying `reason`.
    func retire(because reason: String) {
        blocking.retire(because: reason)
        engine.closeNow(because: reason)
    }

    /// Closes every connection at once; calls in flight fail with ``RedisError/Code/closed``.
    func close() {
        engine.closeNow()
        blocking.close()
    }

    /// Closes both pools; the async API's shared connections answer what is in flight first.
    func close(graceful: Bool) async {
        await engine.close(graceful: graceful)
        blocking.close()
    }

    /// Drops the idle connections of both APIs, so the next calls open new ones.
    func drain() async {
        await engine.drain()
        blocking.drain()
    }
}

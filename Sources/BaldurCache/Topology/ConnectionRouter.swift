import Logging

/// Picks the pool that serves a command. This is the seam where Sentinel
/// (ask the sentinels for the master, follow failovers) and Cluster (route by
/// key slot, follow `MOVED`/`ASK`) plug in without touching the pool.
protocol ConnectionRouter: Sendable {
    /// The pool that must serve `command`; may block while the server is
    /// found (Sentinel).
    func pool(for command: [RedisArgument]) throws(RedisError) -> ServerPool
    /// Every server's pool this router has opened.
    var servers: [ServerPool] { get }
    /// The pool for `command` when known without waiting; `nil` when the
    /// server must be found first.
    func readyPool(for command: [RedisArgument]) throws(RedisError) -> ServerPool?
    /// The pool for `command`, its server found first if need be (off the
    /// cooperative pool): for async callers.
    func pool(for command: [RedisArgument]) async throws(RedisError) -> ServerPool
    /// A call to `address` failed with `error`: the server may have moved.
    func failed(_ error: RedisError, at address: RedisServerAddress)
    /// `address` refused a command with `READONLY`. Returns `true` when the
    /// command should be sent again: another server now serves it.
    func refusedAsReadOnly(at address: RedisServerAddress) throws(RedisError) -> Bool
    /// ``refusedAsReadOnly(at:)`` for async callers.
    func refusedAsReadOnly(at address: RedisServerAddress) async throws(RedisError) -> Bool
    /// Stops any background work; the pools are closed by the client.
    func close()
}

extension ConnectionRouter {
    func failed(_ error: RedisError, at address: RedisServerAddress) {}
    func refusedAsReadOnly(at address: RedisServerAddress) throws(RedisError) -> Bool { false }
    func refusedAsReadOnly(at address: RedisServerAddress) async throws(RedisError) -> Bool { false }
    func close() {}
}

/// One server, one pool.
struct StandaloneRouter: ConnectionRouter {
    let server: ServerPool

    func pool(for command: [RedisArgument]) throws(RedisError) -> ServerPool { server }

    var servers: [ServerPool] { [server] }

    func readyPool(for command: [RedisArgument]) throws(RedisError) -> ServerPool? { server }

    func pool(for command: [RedisArgument]) async throws(RedisError) -> ServerPool { server }
}

enum ConnectionRouters {
    /// The router for a configuration's topology.
    static func make(_ configuration: RedisConfiguration, logger: Logger, telemetry: Telemetry) throws(RedisError) -> any ConnectionRouter {
        switch configuration.topology {
        case .standalone(let address):
            return StandaloneRouter(server: ServerPool(address: address, configuration: configuration, logger: logger, telemetry: telemetry))
        case .sentinel(let master, let sentinels):
            return SentinelRouter(masterName: master, sentinels: sentinels, configuration: configuration, logger: logger, telemetry: telemetry)
        case .cluster(let seeds):
            return ClusterRouter(seeds: seeds, configuration: configuration, logger: logger, telemetry: telemetry)
        }
    }
}

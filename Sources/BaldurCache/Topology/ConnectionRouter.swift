import Logging

/// Picks the pool that serves a command. This is the seam where Sentinel
/// (ask the sentinels for the master, follow failovers) and Cluster (route by
/// key slot, follow `MOVED`/`ASK`) plug in without touching the pool.
protocol ConnectionRouter: Sendable {
    /// The pool that must serve `command`.
    func pool(for command: [RedisArgument]) throws(RedisError) -> ConnectionPool
    /// Every pool this router has opened.
    var pools: [ConnectionPool] { get }
    /// The async API's connections for `command` (see ``EnginePool``).
    func enginePool(for command: [RedisArgument]) throws(RedisError) -> EnginePool
    /// Every engine pool this router has opened.
    var enginePools: [EnginePool] { get }
}

/// One server, one pool.
struct StandaloneRouter: ConnectionRouter {
    let pool: ConnectionPool
    let enginePool: EnginePool

    func pool(for command: [RedisArgument]) throws(RedisError) -> ConnectionPool { pool }

    var pools: [ConnectionPool] { [pool] }

    func enginePool(for command: [RedisArgument]) throws(RedisError) -> EnginePool { enginePool }

    var enginePools: [EnginePool] { [enginePool] }
}

enum ConnectionRouters {
    /// The router for a configuration's topology.
    static func make(_ configuration: RedisConfiguration, logger: Logger, telemetry: Telemetry) throws(RedisError) -> any ConnectionRouter {
        switch configuration.topology {
        case .standalone(let address):
            return StandaloneRouter(
                pool: ConnectionPool(address: address, configuration: configuration, logger: logger, meters: telemetry.poolMeters()),
                enginePool: EnginePool(address: address, configuration: configuration, logger: logger)
            )
        case .sentinel(let master, _):
            throw RedisError(.unsupported, "Redis Sentinel (master '\(master)') is not yet supported by BaldurCache; connect to the master with redis:// for now")
        case .cluster:
            throw RedisError(.unsupported, "Redis Cluster is not yet supported by BaldurCache; connect to a single node with redis:// for now")
        }
    }
}

import Dispatch
import Foundation
import Logging

/// One cluster node BaldurCache talks to: its pool, kept while the client lives.
final class ClusterNode: Sendable {
    let address: RedisServerAddress
    /// Both APIs' connections to the node.
    let pool: ServerPool

    init(address: RedisServerAddress, configuration: RedisConfiguration, logger: Logger, telemetry: Telemetry) {
        self.address = address
        pool = ServerPool(address: address, configuration: configuration, logger: logger, telemetry: telemetry)
    }
}

/// Where one cluster command goes.
enum ClusterTarget: Sendable {
    /// The master serving this slot in the map.
    case slot(Int)
    /// A node named by a redirect.
    case address(RedisServerAddress)
    /// Any master: keyless commands.
    case anyMaster
}

/// Serves a Redis Cluster: the slot map, one pool pair per node, and the
/// map's refreshes.
///
/// The map comes from `CLUSTER SLOTS`, asked of the known masters first,
/// then every other node seen, then the seeds. It is read by every caller
/// under one lock (a slot is an array index) and replaced whole by a refresh.
/// A refresh runs:
/// - on first use (the caller waits; async callers off the cooperative pool);
/// - after `MOVED` (the moved slot is pointed at its new owner at once, the
///   rest of the map is refreshed in the background: a `MOVED` usually
///   means a resharding or a failover, which moved more than one slot);
/// - after `CLUSTERDOWN`, or when a node cannot be reached or drops a
///   connection: a failover may be under way, and its new master is only
///   learnt from the map.
/// Background refreshes run one at a time on one queue, at most one per
/// ``refreshInterval``.
final class ClusterRouter: ConnectionRouter {
    private let configuration: RedisConfiguration
    /// How a refresh asks for the map: like the data connections, but a node
    /// that stops answering holds it no longer than a connect.
    private let discoveryConfiguration: RedisConfiguration
    private let seeds: [RedisServerAddress]
    private let logger: Logger
    private let telemetry: Telemetry

    private struct State {
        /// Every node ever seen, by address; their pools live until close.
        var nodes: [RedisServerAddress: ClusterNode] = [:]
        /// The master of each slot; empty before the first discovery.
        var slots: [ClusterNode?] = []
        /// The masters, in address order (a cluster ``RedisClient`` `SCAN`
        /// cursor names one by its index here).
        var masters: [ClusterNode] = []
        var closed = false
        var lastBackgroundRefresh: ContinuousClock.Instant?
    }

    private let state: PlainMutex<State>
    /// Held for the length of one refresh; counts them, for the log.
    private let refreshes = PlainMutex(0)
    /// Background refreshes run here, never on a caller's thread.
    static let queue = DispatchQueue(label: "BaldurCache.cluster")
    /// The least time between two background refreshes.
    static let refreshInterval: Duration = .milliseconds(100)

    init(seeds: [RedisServerAddress], configuration: RedisConfiguration, logger: Logger, telemetry: Telemetry) {
        self.seeds = seeds
        self.configuration = configuration
        var discoveryConfiguration = configuration
        discoveryConfiguration.commandTimeout = configuration.connectTimeout
        discoveryConfiguration.pool.spinWait = .zero
        self.discoveryConfiguration = discoveryConfiguration
        self.logger = logger
        self.telemetry = telemetry
        state = PlainMutex(State())
    }

    // MARK: Nodes

    /// The node `target` names, after a first discovery if none ran yet.
    func node(for target: ClusterTarget) throws(RedisError) -> ClusterNode {
        if let node = try readyNode(for: target) { return node }
        try refreshNow(reason: "first use", unlessLoaded: true)
        guard let node = try readyNode(for: target) else { throw unservedError(target) }
        return node
    }

    /// ``node(for:)`` for async callers: discovery runs off the cooperative pool.
    func node(for target: ClusterTarget) async throws(RedisError) -> ClusterNode {
        if let node = try readyNode(for: target) { return node }
        return try await offPool(on: Self.queue, handoff: state) { () throws(RedisError) in try self.node(for: target) }
    }

    /// The node `target` names when the map answers without a discovery;
    /// `nil` before the first one. Throws `CLUSTERDOWN` when the map has no
    /// master for the slot.
    func readyNode(for target: ClusterTarget) throws(RedisError) -> ClusterNode? {
        let found = try state.withLock { state throws(RedisError) -> ClusterNode?? in
            if state.closed { throw closedError() }
            if case .address(let address) = target { return .some(node(at: address, in: &state)) }
            guard !state.slots.isEmpty else { return nil }
            switch target {
            case .slot(let slot): return .some(state.slots[slot])
            case .anyMaster: return .some(state.masters.first)
            case .address: return nil
            }
        }
        guard let found else { return nil }
        guard let found else { throw unservedError(target) }
        return found
    }

    /// The masters in address order, after a first discovery if none ran yet.
    func masters() throws(RedisError) -> [ClusterNode] {
        _ = try node(for: .anyMaster)
        return state.withLock { $0.masters }
    }

    /// ``masters()`` for async callers.
    func masters() async throws(RedisError) -> [ClusterNode] {
        _ = try await node(for: .anyMaster)
        return state.withLock { $0.masters }
    }

    private func node(at address: RedisServerAddress, in state: inout State) -> ClusterNode {
        if let node = state.nodes[address] { return node }
        let node = ClusterNode(address: address, configuration: configuration, logger: logger, telemetry: telemetry)
        state.nodes[address] = node
        return node
    }

    // MARK: Redirects and failures

    /// `MOVED slot address`: the slot is served there now. Points the slot
    /// at it at once and refreshes the rest of the map in the background.
    func moved(slot: Int, to address: RedisServerAddress) {
        state.withLock { state in
            guard !state.closed, state.slots.indices.contains(slot) else { return }
            state.slots[slot] = node(at: address, in: &state)
        }
        refreshInBackground(reason: "slot \(slot) moved to \(address)")
    }

    func failed(_ error: RedisError, at address: RedisServerAddress) {
        guard error.isConnectionFatal else { return }
        refreshInBackground(reason: "a connection to \(address) failed (\(error.code))")
    }

    /// Starts a refresh on ``queue`` unless one started less than ``refreshInterval`` ago.
    func refreshInBackground(reason: String) {
        let due = state.withLock { state -> Bool in
            guard !state.closed, !state.slots.isEmpty else { return false }
            if let last = state.lastBackgroundRefresh, ContinuousClock.now - last < Self.refreshInterval { return false }
            state.lastBackgroundRefresh = .now
            return true
        }
        guard due else { return }
        Self.queue.async { [self] in
            do { try refreshNow(reason: reason) } catch {
                logger.debug("redis cluster map refresh failed", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: ConnectionRouter

    func pool(for command: [RedisArgument]) throws(RedisError) -> ServerPool {
        try node(for: Self.target(of: command)).pool
    }

    var servers: [ServerPool] { state.withLock { Array($0.nodes.values) }.map(\.pool) }

    func readyPool(for command: [RedisArgument]) throws(RedisError) -> ServerPool? {
        try readyNode(for: Self.target(of: command))?.pool
    }

    func pool(for command: [RedisArgument]) async throws(RedisError) -> ServerPool {
        try await node(for: Self.target(of: command)).pool
    }


    func close() {
        state.withLock { $0.closed = true }
    }

    /// The slot of the command's key, for commands routed by one key; any master otherwise.
    static func target(of command: [RedisArgument]) -> ClusterTarget {
        if case .key(let index) = ClusterCommand.route(of: command) { return .slot(ClusterSlot.of(command[index])) }
        return .anyMaster
    }

    // MARK: Discovery

    /// Asks for the map now, one refresh at a time, and replaces it with the
    /// first answer. A caller that waited for another's refresh runs its own
    /// (the map may have changed since), unless `unlessLoaded` and a map is in.
    func refreshNow(reason: String, unlessLoaded: Bool = false) throws(RedisError) {
        try refreshes.withLock { count throws(RedisError) in
            let (closed, loaded) = state.withLock { ($0.closed, !$0.slots.isEmpty) }
            guard !closed, !(unlessLoaded && loaded) else { return }
            count += 1
            let (map, source) = try fetchMap()
            install(map)
            logger.debug("redis cluster map refreshed", metadata: [
                "reason": "\(reason)", "source": "\(source)", "redis.masters": "\(Set(map.map(\.master)).count)",
                "redis.refresh": "\(count)",
            ])
        }
    }

    /// One range of `CLUSTER SLOTS`.
    struct SlotRange: Equatable {
        let slots: ClosedRange<Int>
        let master: RedisServerAddress
    }

    /// Asks the known masters, then the other known nodes, then the seeds,
    /// until one answers `CLUSTER SLOTS`.
    private func fetchMap() throws(RedisError) -> (map: [SlotRange], source: RedisServerAddress) {
        let (masters, others) = state.withLock { state in
            (state.masters.map(\.address), state.nodes.keys.sorted { $0.description < $1.description })
        }
        var candidates: [RedisServerAddress] = []
        for address in masters + others + seeds where !candidates.contains(address) { candidates.append(address) }
        var problems: [String] = []
        var lastError: RedisError?
        var notClusterNodes = 0
        for address in candidates {
            do {
                let connection = try RedisConnection(address: address, configuration: discoveryConfiguration)
                defer { connection.close() }
                let reply = try connection.send(["CLUSTER", "SLOTS"])
                let map = try Self.parseSlots(reply, askedOf: address)
                guard !map.isEmpty else {
                    problems.append("\(address) serves no slots yet")
                    continue
                }
                return (map, address)
            } catch where error.code == .server && error.message.contains("cluster support disabled") {
                notClusterNodes += 1
                lastError = error
                problems.append("\(address) is not a cluster node (it answered: \(error.message))")
            } catch {
                lastError = error
                problems.append("\(address): \(error.message)")
            }
        }
        // Servers that answered as plain servers: the URL names the wrong kind of server.
        if notClusterNodes > 0 {
            throw RedisError(.invalidConfiguration, "redis+cluster:// needs Redis Cluster nodes: \(problems.joined(separator: "; "))")
        }
        let code = lastError.map { $0.code == .server ? .connectionRefused : $0.code } ?? .connectionRefused
        throw RedisError(code, "no Redis Cluster node answered CLUSTER SLOTS: \(problems.joined(separator: "; "))")
    }

    /// Installs a new map: every slot points at its master's node.
    private func install(_ map: [SlotRange]) {
        state.withLock { state in
            var slots = [ClusterNode?](repeating: nil, count: ClusterSlot.count)
            var masters: [RedisServerAddress: ClusterNode] = [:]
            for range in map {
                let node = node(at: range.master, in: &state)
                masters[range.master] = node
                for slot in range.slots { slots[slot] = node }
            }
            state.slots = slots
            state.masters = masters.values.sorted { $0.address.description < $1.address.description }
        }
    }

    /// Reads `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replica...], ...]`.
    /// An empty host means the node asked (Redis says so when it does not know its own address).
    static func parseSlots(_ reply: RedisReply, askedOf asked: RedisServerAddress) throws(RedisError) -> [SlotRange] {
        guard case .array(let entries) = reply else {
            throw RedisError(.protocolError, "CLUSTER SLOTS returned \(reply.kindName)")
        }
        var ranges: [SlotRange] = []
        for entry in entries {
            guard let fields = entry.array, fields.count >= 3,
                  let start = fields[0].integer, let end = fields[1].integer,
                  start >= 0, end >= start, end < ClusterSlot.count,
                  let node = fields[2].array, node.count >= 2,
                  let host = node[0].string, let port = node[1].integer, port > 0, port <= 65535 else {
                throw RedisError(.protocolError, "CLUSTER SLOTS returned an entry of an unexpected shape")
            }
            let master: RedisServerAddress
            if host.isEmpty || host == "?" {
                guard case .tcp(let askedHost, _) = asked else {
                    throw RedisError(.protocolError, "CLUSTER SLOTS named no host for slots \(start)-\(end)")
                }
                master = .tcp(host: askedHost, port: Int(port))
            } else {
                master = .tcp(host: host, port: Int(port))
            }
            ranges.append(SlotRange(slots: Int(start)...Int(end), master: master))
        }
        return ranges
    }

    private func unservedError(_ target: ClusterTarget) -> RedisError {
        switch target {
        case .slot(let slot):
            RedisError(.server, "CLUSTERDOWN Hash slot not served: slot \(slot) has no master in the cluster map")
        default:
            RedisError(.server, "CLUSTERDOWN the cluster map has no master")
        }
    }

    private func closedError() -> RedisError {
        RedisError(.closed, "the Redis Cluster client was closed")
    }
}

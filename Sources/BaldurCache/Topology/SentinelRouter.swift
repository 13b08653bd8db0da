import Dispatch
import Foundation
import Logging

/// Serves a master found through Redis Sentinel, and follows its failovers.
///
/// Discovery follows the Sentinel client spec: ask the sentinels in turn
/// for the master's address (`SENTINEL get-master-addr-by-name`), put the
/// first that answers at the front of the list, learn the others
/// (`SENTINEL sentinels`), then connect to the address given and check with
/// `ROLE` that it is a master (a sentinel's answer can lag a failover): if
/// not, ask again. Sentinels get ``RedisConfiguration/sentinelPassword``
/// (no user, database 0), the master the configured credentials and
/// database; both get the configuration's TLS.
///
/// The master changes when:
/// - a sentinel publishes `+switch-master` for it (a watcher thread stays
///   subscribed on one sentinel, and asks for the address every second
///   besides, in case a message is lost);
/// - a command is refused with `READONLY` (the master was demoted): the
///   caller waits for a new discovery, and a single command is sent again
///   there (it did not run);
/// - a connection to the master fails: a discovery runs in the background.
///
/// When it changes, everything on the old master ends at once (see
/// ``ConnectionAbort``): its idle connections close; calls in flight there,
/// synchronous and async, fail with `connectionClosed` saying the master
/// moved (a read-only one is sent once more, to the new master, when
/// `retryOnTimeout` allows); connects under way are given up, and their
/// commands go to the new master, since nothing was sent. No new command
/// goes to the old master. Locks and compare-and-set scripts are commands
/// like any other here, so they only reach the verified master.
final class SentinelRouter: ConnectionRouter {
    private let masterName: String
    /// The master's configuration (credentials, database, TLS, pools).
    private let configuration: RedisConfiguration
    /// How the sentinels are reached: their password, database 0, the same TLS.
    private let sentinelConfiguration: RedisConfiguration
    private let logger: Logger
    private let telemetry: Telemetry

    private struct Master {
        let address: RedisServerAddress
        let server: ServerPool
    }

    private struct State {
        var sentinels: [RedisServerAddress]
        var master: Master?
        /// Pools of earlier masters, closed; kept while connections of theirs are still out.
        var retired: [Master] = []
        var closed = false
        /// When the last background discovery started, to run at most one per ``refreshInterval``.
        var lastBackgroundRefresh: ContinuousClock.Instant?
    }

    private let state: PlainMutex<State>
    /// Held for the length of one discovery: concurrent callers wait for it
    /// and use its result. Counts the discoveries run, for the log.
    private let discoveries = PlainMutex(0)
    private let watcher: SentinelWatcher
    /// Background discoveries run here, never on a caller's thread.
    static let queue = DispatchQueue(label: "BaldurCache.sentinel")
    /// The least time between two discoveries started by connection failures.
    static let refreshInterval: Duration = .milliseconds(100)

    init(masterName: String, sentinels: [RedisServerAddress], configuration: RedisConfiguration, logger: Logger, telemetry: Telemetry) {
        self.masterName = masterName
        self.configuration = configuration
        var sentinelConfiguration = configuration
        sentinelConfiguration.topology = .standalone(sentinels[0])
        sentinelConfiguration.username = nil
        sentinelConfiguration.password = configuration.sentinelPassword
        sentinelConfiguration.database = 0
        // A sentinel that stops answering must not hold a discovery longer than a connect.
        sentinelConfiguration.commandTimeout = configuration.connectTimeout
        sentinelConfiguration.pool.spinWait = .zero
        self.sentinelConfiguration = sentinelConfiguration
        self.logger = logger
        self.telemetry = telemetry
        self.state = PlainMutex(State(sentinels: sentinels))
        self.watcher = SentinelWatcher(masterName: masterName, configuration: sentinelConfiguration, logger: logger)
    }

    deinit {
        // A client dropped without close(): its subscription must not outlive it.
        watcher.stop()
    }

    // MARK: ConnectionRouter

    func pool(for command: [RedisArgument]) throws(RedisError) -> ServerPool {
        try currentMaster().server
    }

    var servers: [ServerPool] {
        state.withLock { state in (state.master.map { [$0] } ?? []) + state.retired }.map(\.server)
    }

    func readyPool(for command: [RedisArgument]) throws(RedisError) -> ServerPool? {
        try state.withLock { state throws(RedisError) in
            if state.closed { throw closedError() }
            return state.master?.server
        }
    }

    func pool(for command: [RedisArgument]) async throws(RedisError) -> ServerPool {
        if let pool = try readyPool(for: command) { return pool }
        return try await offPool(on: Self.queue, handoff: state) { () throws(RedisError) in try self.currentMaster().server }
    }


    func failed(_ error: RedisError, at address: RedisServerAddress) {
        guard error.isConnectionFatal else { return }
        let due = state.withLock { state -> Bool in
            guard !state.closed, state.master?.address == address else { return false }
            if let last = state.lastBackgroundRefresh, ContinuousClock.now - last < Self.refreshInterval { return false }
            state.lastBackgroundRefresh = .now
            return true
        }
        guard due else { return }
        Self.queue.async { [self] in
            do { try refresh(reason: "a connection to the master failed (\(error.code))") } catch {
                logger.debug("redis sentinel rediscovery failed", metadata: ["error": "\(error)"])
            }
        }
    }

    func refusedAsReadOnly(at address: RedisServerAddress) throws(RedisError) -> Bool {
        guard state.withLock({ $0.master?.address == address }) else { return true }
        try refresh(reason: "\(address) answered READONLY: it is no longer the master")
        return state.withLock { $0.master?.address != address }
    }

    func refusedAsReadOnly(at address: RedisServerAddress) async throws(RedisError) -> Bool {
        try await offPool(on: Self.queue, handoff: state) { () throws(RedisError) in try self.refusedAsReadOnly(at: address) }
    }

    func close() {
        state.withLock { $0.closed = true }
        watcher.stop()
    }

    // MARK: Discovery

    private func currentMaster() throws(RedisError) -> Master {
        let known = try state.withLock { state throws(RedisError) -> Master? in
            if state.closed { throw closedError() }
            return state.master
        }
        if let known { return known }
        return try discoveries.withLock { count throws(RedisError) -> Master in
            // Another caller may have found it while this one waited.
            if let found = state.withLock({ $0.master }) { return found }
            count += 1
            let master = install(try locateMaster())
            watcher.start(router: self)
            return master
        }
    }

    /// Asks the sentinels again and switches to the master they name when it
    /// is not the current one. One at a time.
    func refresh(reason: String) throws(RedisError) {
        try discoveries.withLock { count throws(RedisError) in
            guard !state.withLock({ $0.closed }) else { return }
            count += 1
            let address = try locateMaster()
            if state.withLock({ $0.master?.address }) != address {
                logger.warning("redis sentinel master changed", metadata: [
                    "redis.master": "\(masterName)", "redis.address": "\(address)", "reason": "\(reason)",
                    "redis.discovery": "\(count)",
                ])
            }
            _ = install(address)
        }
    }

    /// The address the sentinels name now, without verifying it: the
    /// watcher's cheap poll. Asks over `connection` when it has one (the
    /// watcher keeps it between polls), else the first sentinel that
    /// answers, whose connection it keeps. `nil` when no sentinel answers.
    func currentlyNamedMaster(reusing connection: inout RedisConnection?) -> RedisServerAddress? {
        let question: [RedisArgument] = ["SENTINEL", "get-master-addr-by-name", RedisArgument(masterName)]
        if let existing = connection, let reply = try? existing.send(question) { return Self.address(from: reply) }
        connection?.close()
        connection = nil
        for sentinel in sentinels {
            guard let fresh = try? RedisConnection(address: sentinel, configuration: sentinelConfiguration) else { continue }
            if let reply = try? fresh.send(question) {
                connection = fresh
                return Self.address(from: reply)
            }
            fresh.close()
        }
        return nil
    }

    /// The sentinels, the one that answered last first.
    var sentinels: [RedisServerAddress] { state.withLock { $0.sentinels } }

    /// The address now served, if any.
    var masterAddress: RedisServerAddress? { state.withLock { $0.master?.address } }

    /// Makes `address` the master: new pools for it, the old ones closed.
    private func install(_ address: RedisServerAddress) -> Master {
        let (master, old) = state.withLock { state -> (Master, Master?) in
            if let current = state.master, current.address == address { return (current, nil) }
            let master = Master(address: address, server: ServerPool(address: address, configuration: configuration, logger: logger, telemetry: telemetry))
            let old = state.master
            state.retired.removeAll { $0.server.openConnections == 0 }
            if let old { state.retired.append(old) }
            state.master = master
            return (master, old)
        }
        if let old {
            let reason = "the master '\(masterName)' moved from \(old.address) to \(address) (failover)"
            old.server.close(because: reason)
        }
        return master
    }

    /// Asks each sentinel in turn, then verifies the address with `ROLE`.
    /// When a sentinel names a server that is not a master, asks again
    /// (within `connectTimeout`): its answer may lag a failover.
    private func locateMaster() throws(RedisError) -> RedisServerAddress {
        let deadline = ContinuousClock.now + configuration.connectTimeout
        var problems: [String] = []
        var lastError: RedisError?
        var notSentinels = 0
        while true {
            var answered = false
            for sentinel in state.withLock({ $0.sentinels }) {
                do {
                    let connection = try RedisConnection(address: sentinel, configuration: sentinelConfiguration)
                    defer { connection.close() }
                    let reply = try connection.send(["SENTINEL", "get-master-addr-by-name", RedisArgument(masterName)])
                    guard let candidate = Self.address(from: reply) else {
                        problems.append("\(sentinel) does not know a master named '\(masterName)'")
                        continue
                    }
                    answered = true
                    learnSentinels(from: connection, first: sentinel)
                    let master = try RedisConnection(address: candidate, configuration: configuration)
                    defer { master.close() }
                    let role = try master.send(["ROLE"]).array?.first?.string
                    guard role == "master" else {
                        problems.append("\(sentinel) names \(candidate), which is a \(role ?? "server of unknown role"), not a master")
                        continue
                    }
                    return candidate
                } catch where error.code == .server && error.message.hasPrefix("ERR unknown command") && !answered {
                    // A plain Redis server: it knows no SENTINEL command.
                    notSentinels += 1
                    lastError = error
                    problems.append("\(sentinel) is not a sentinel (it answered: \(error.message))")
                } catch {
                    lastError = error
                    problems.append("\(sentinel): \(error.message)")
                }
            }
            guard answered, ContinuousClock.now + .milliseconds(100) < deadline else { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        if notSentinels > 0 {
            throw RedisError(.invalidConfiguration, "redis+sentinel:// needs sentinels (redis-sentinel, port 26379 by default): \(Self.distinct(problems).joined(separator: "; "))")
        }
        let code = lastError.map { $0.code == .server ? .connectionRefused : $0.code } ?? .connectionRefused
        throw RedisError(code, "no sentinel named a reachable master '\(masterName)': \(Self.distinct(problems).joined(separator: "; "))")
    }

    /// Puts `first` at the front of the list and adds the sentinels it knows
    /// (`SENTINEL sentinels`).
    private func learnSentinels(from connection: RedisConnection, first: RedisServerAddress) {
        var learned: [RedisServerAddress] = []
        if let entries = try? connection.send(["SENTINEL", "sentinels", RedisArgument(masterName)]).array {
            for entry in entries {
                guard let fields = entry.array else { continue }
                var values: [String: String] = [:]
                var index = 0
                while index + 1 < fields.count {
                    if let key = fields[index].string, let value = fields[index + 1].string { values[key] = value }
                    index += 2
                }
                if let host = values["ip"], let port = values["port"].flatMap(Int.init) {
                    let address = RedisServerAddress.tcp(host: host, port: port)
                    if (try? address.validate()) != nil { learned.append(address) }
                }
            }
        }
        state.withLock { state in
            var sentinels = [first] + state.sentinels.filter { $0 != first }
            for address in learned where !sentinels.contains(address) { sentinels.append(address) }
            state.sentinels = sentinels
        }
    }

    /// `[host, port]` as `SENTINEL get-master-addr-by-name` answers it.
    static func address(from reply: RedisReply) -> RedisServerAddress? {
        guard let pair = reply.array, pair.count == 2, let host = pair[0].string,
              let port = pair[1].string.flatMap(Int.init) else { return nil }
        let address = RedisServerAddress.tcp(host: host, port: port)
        return (try? address.validate()) == nil ? nil : address
    }

    private static func distinct(_ problems: [String]) -> [String] {
        var seen = Set<String>()
        return problems.filter { seen.insert($0).inserted }
    }

    private func closedError() -> RedisError {
        RedisError(.closed, "the Redis client for Sentinel master '\(masterName)' was closed")
    }
}

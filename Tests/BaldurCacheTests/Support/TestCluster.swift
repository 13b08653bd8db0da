import BaldurCache
import Foundation

/// A Redis Cluster of one test's own (`scripts/cluster.sh`): three masters
/// and three replicas on loopback. For tests that kill a master or move a
/// slot. Stopped by PID in `stop()` or when released.
final class TestCluster: @unchecked Sendable {
    // Used by one test at a time; `pids` is only changed by kill and stop.
    let ports: [Int]
    private let directory: URL
    private var pids: [Int32]
    /// Every node serves TLS only (the test CA's server certificate).
    let tls: Bool

    init(tls: Bool = false) throws {
        self.tls = tls
        directory = try TestEnvironment.serverDirectory("cluster")
        let group = try startServerGroup(
            script: TestEnvironment.value("BALDUR_TEST_CLUSTER_SCRIPT"), directory: directory,
            arguments: tls ? [try TestEnvironment.tlsDirectory()] : [], ports: 6, what: "the test cluster (scripts/cluster.sh)"
        )
        pids = group.pids
        self.ports = group.ports
    }

    /// `redis+cluster://` with two seeds (`rediss+cluster://` trusting the test CA for a TLS cluster).
    var url: String {
        let seeds = ports.prefix(2).map { "127.0.0.1:\($0)" }.joined(separator: ",")
        guard tls, let ca = try? TestEnvironment.tlsFile("ca.crt") else { return "redis+cluster://\(seeds)" }
        return "rediss+cluster://\(seeds)?ssl_ca_certs=\(ca)"
    }

    func configuration(commandTimeout: Duration = .seconds(2)) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.commandTimeout = commandTimeout
        configuration.connectTimeout = .seconds(1)
        return configuration
    }

    /// A plain client of the one node on `port` (no cluster routing).
    func nodeClient(port: Int) throws -> RedisClient {
        try TestCluster.nodeClient(port: port, tls: tls)
    }

    static func nodeClient(port: Int, tls: Bool = false) throws -> RedisClient {
        var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port))
        configuration.commandTimeout = .seconds(2)
        configuration.connectTimeout = .seconds(1)
        if tls {
            configuration.tls = RedisTLSConfiguration()
            configuration.tls?.caFile = try TestEnvironment.tlsFile("ca.crt")
        }
        return try RedisClient(configuration: configuration)
    }

    /// SIGKILLs the node on `port`.
    func kill(port: Int) {
        guard let index = ports.firstIndex(of: port), index < pids.count else { return }
        Foundation.kill(pids[index], SIGKILL)
    }

    /// Sends `signal` to the node on `port` (SIGSTOP: a stall; SIGCONT: resumed).
    func signal(port: Int, _ signal: Int32) {
        guard let index = ports.firstIndex(of: port), index < pids.count else { return }
        Foundation.kill(pids[index], signal)
    }

    func stop() {
        for pid in pids { Foundation.kill(pid, SIGKILL) }
        pids = []
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

/// What a cluster's nodes say about themselves (`CLUSTER NODES` on one of them).
struct ClusterNodes {
    struct Node {
        let id: String
        let port: Int
        let isMaster: Bool
        let failed: Bool
        let masterID: String?
        let slots: [ClosedRange<Int>]
    }

    let nodes: [Node]

    init(asking port: Int, tls: Bool = false) throws {
        let client = try TestCluster.nodeClient(port: port, tls: tls)
        defer { client.close() }
        let text = try client.send("CLUSTER", "NODES").string ?? ""
        nodes = text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 8 else { return nil }
            let address = fields[1].split(separator: "@")[0]
            guard let port = address.split(separator: ":").last.flatMap({ Int($0) }) else { return nil }
            let flags = fields[2]
            let slots: [ClosedRange<Int>] = fields.dropFirst(8).compactMap { token in
                guard !token.hasPrefix("[") else { return nil }
                let bounds = token.split(separator: "-").compactMap { Int($0) }
                guard let first = bounds.first else { return nil }
                return first...(bounds.last ?? first)
            }
            return Node(id: String(fields[0]), port: port, isMaster: flags.contains("master"), failed: flags.contains("fail"),
                        masterID: fields[3] == "-" ? nil : String(fields[3]), slots: slots)
        }
    }

    /// The live master serving `slot`.
    func master(of slot: Int) -> Node? {
        nodes.first { $0.isMaster && !$0.failed && $0.slots.contains { $0.contains(slot) } }
    }

    var masters: [Node] { nodes.filter { $0.isMaster && !$0.failed } }
}

import BaldurCache
import Foundation

/// A Sentinel group of one test's own (`scripts/sentinel-group.sh`): a
/// master, a replica and three sentinels on loopback, with passwords. For
/// tests that fail the master over or kill it. Stopped by PID in `stop()`
/// or when released.
final class TestSentinelGroup: @unchecked Sendable {
    // Used by one test at a time; `pids` is only changed by kill and stop.
    let masterPort: Int
    let replicaPort: Int
    let sentinelPorts: [Int]
    let masterPassword = "mpw-\(UUID().uuidString.prefix(8))"
    let sentinelPassword = "spw-\(UUID().uuidString.prefix(8))"
    private let directory: URL
    private var pids: [Int32]
    /// Everything serves TLS only (the test CA's server certificate).
    let tls: Bool

    init(tls: Bool = false) throws {
        self.tls = tls
        directory = try TestEnvironment.serverDirectory("sentinel")
        let group = try startServerGroup(
            script: TestEnvironment.value("BALDUR_TEST_SENTINEL_SCRIPT"), directory: directory,
            arguments: [masterPassword, sentinelPassword] + (tls ? [try TestEnvironment.tlsDirectory()] : []),
            ports: 5, what: "the test Sentinel group (scripts/sentinel-group.sh)"
        )
        let ports = group.ports
        pids = group.pids
        masterPort = ports[0]
        replicaPort = ports[1]
        sentinelPorts = Array(ports[2...])
    }

    /// `redis+sentinel://mymaster@...` (`rediss+sentinel://` trusting the
    /// test CA for a TLS group), without the passwords.
    var url: String {
        let hosts = sentinelPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        guard tls, let ca = try? TestEnvironment.tlsFile("ca.crt") else { return "redis+sentinel://mymaster@\(hosts)/0" }
        return "rediss+sentinel://mymaster@\(hosts)/0?ssl_ca_certs=\(ca)"
    }

    /// ``url`` with the passwords set.
    func configuration(commandTimeout: Duration = .seconds(2)) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.password = masterPassword
        configuration.sentinelPassword = sentinelPassword
        configuration.commandTimeout = commandTimeout
        configuration.connectTimeout = .seconds(1)
        return configuration
    }

    /// A client of the server on `port` (master or replica).
    func directClient(port: Int) throws -> RedisClient {
        try RedisClient(configuration: direct(port: port, password: masterPassword))
    }

    /// A client of the first sentinel.
    func sentinelClient() throws -> RedisClient {
        try RedisClient(configuration: direct(port: sentinelPorts[0], password: sentinelPassword))
    }

    private func direct(port: Int, password: String) throws -> RedisConfiguration {
        var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port), password: password)
        if tls {
            configuration.tls = RedisTLSConfiguration()
            configuration.tls?.caFile = try TestEnvironment.tlsFile("ca.crt")
        }
        return configuration
    }

    /// The master's port as the sentinels name it now.
    func namedMasterPort() throws -> Int? {
        let client = try sentinelClient()
        defer { client.close() }
        return try client.send("SENTINEL", "get-master-addr-by-name", "mymaster").array?.last?.string.flatMap(Int.init)
    }

    /// Sends `signal` (SIGKILL unless told) to the server listening on
    /// `port` (the first two PIDs are master and replica).
    func kill(port: Int, signal: Int32 = SIGKILL) {
        let index = port == masterPort ? 0 : port == replicaPort ? 1 : nil
        guard let index, index < pids.count else { return }
        Foundation.kill(pids[index], signal)
    }

    func stop() {
        for pid in pids { Foundation.kill(pid, SIGKILL) }
        pids = []
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

/// Runs `script DIRECTORY ARGUMENTS...`, which starts servers in the
/// directory and writes `ports` and `pids` there, then `ready` (or
/// `failed`). Returns the `ports` ports and the PIDs; on failure kills what
/// started and throws.
func startServerGroup(script: String, directory: URL, arguments: [String], ports expected: Int, what: String) throws -> (ports: [Int], pids: [Int32]) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["bash", script, directory.path] + arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    // The script leaves its servers running; waiting for its exit through
    // Process hangs here now and then, so wait for the file that ends it.
    let deadline = ContinuousClock.now + .seconds(60)
    let ready = directory.appendingPathComponent("ready").path, failed = directory.appendingPathComponent("failed").path
    while !FileManager.default.fileExists(atPath: ready), !FileManager.default.fileExists(atPath: failed), ContinuousClock.now < deadline {
        Thread.sleep(forTimeInterval: 0.05)
    }
    let ports = (try? String(contentsOf: directory.appendingPathComponent("ports"), encoding: .utf8))?
        .split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? []
    let pids = ((try? String(contentsOf: directory.appendingPathComponent("pids"), encoding: .utf8)) ?? "")
        .split(separator: "\n").compactMap { Int32($0) }
    guard FileManager.default.fileExists(atPath: ready), ports.count == expected else {
        for pid in pids { Foundation.kill(pid, SIGKILL) }
        throw RedisError(.connectTimeout, "\(what) did not start")
    }
    return (ports, pids)
}

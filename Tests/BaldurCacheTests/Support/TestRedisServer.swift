@testable import BaldurCache
import Foundation

/// A redis-server of one test's own, for tests that kill, pause or restart
/// their server and so must not share one. Binds 127.0.0.1 only; stopped by
/// PID when the test calls `stop()` or when the value is released.
final class TestRedisServer: @unchecked Sendable {
    // Used by one test at a time; the process handle is not shared across threads.
    let port: Int
    private let directory: URL
    private var process: Process?

    /// - Parameter tlsCertificate: Serve TLS only, with this certificate
    ///   of ``TestEnvironment/tlsDirectory()`` (`server`, `expired`,
    ///   `wrong-name`), signed by its `ca`; no client certificate asked.
    init(extraArguments: [String] = [], tlsCertificate: String? = nil) throws {
        port = try freeLoopbackPort()
        self.tlsCertificate = tlsCertificate
        directory = try TestEnvironment.serverDirectory("redis")
        self.extraArguments = extraArguments
        try start()
    }

    private let extraArguments: [String]
    private let tlsCertificate: String?

    /// `redis://127.0.0.1:PORT/0`, or for a TLS server
    /// `rediss://localhost:PORT/0` trusting the test CA.
    var url: String {
        guard tlsCertificate != nil, let ca = try? TestEnvironment.tlsFile("ca.crt") else { return "redis://127.0.0.1:\(port)/0" }
        return "rediss://localhost:\(port)/0?ssl_ca_certs=\(ca)"
    }

    func configuration(commandTimeout: Duration? = .seconds(5)) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.commandTimeout = commandTimeout
        configuration.connectTimeout = .seconds(2)
        return configuration
    }

    /// Starts the server on `port` and waits until it answers PING.
    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.redisServerBinary())
        var listening = ["--port", String(port)]
        if let tlsCertificate {
            listening = [
                "--port", "0", "--tls-port", String(port),
                "--tls-cert-file", try TestEnvironment.tlsFile("\(tlsCertificate).crt"),
                "--tls-key-file", try TestEnvironment.tlsFile("\(tlsCertificate).key"),
                "--tls-ca-cert-file", try TestEnvironment.tlsFile("ca.crt"), "--tls-auth-clients", "no",
            ]
        }
        process.arguments = listening + [
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", directory.path, "--enable-debug-command", "local",
        ] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // For scripts/run-tests.sh, should this process end without stopping it.
        try? "\(process.processIdentifier)\n".write(to: pidFile, atomically: true, encoding: .utf8)
        let deadline = ContinuousClock.now + .seconds(10)
        var configuration = try RedisConfiguration(url: url)
        configuration.connectTimeout = .milliseconds(200)
        // The expired and wrong-name certificates do not verify, by design.
        configuration.tls?.peerVerification = .insecureNoVerification
        while ContinuousClock.now < deadline {
            if let connection = try? RedisConnection(address: .tcp(host: "127.0.0.1", port: port), configuration: configuration),
               (try? connection.send(["PING"])) != nil {
                return
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw RedisError(.connectTimeout, "test redis-server on port \(port) did not start")
    }

    /// Kills the server with SIGKILL (a crash, not a shutdown) and waits for it to exit.
    func kill() {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
        try? FileManager.default.removeItem(at: pidFile)
    }

    /// Where the server's PID is written (see ``TestEnvironment/serverDirectory(_:)``).
    private var pidFile: URL { directory.appendingPathComponent("pid") }

    /// Stops the server with SIGSTOP: it keeps its sockets and answers nothing (a stall).
    func pause() {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, SIGSTOP)
    }

    /// Resumes a paused server with SIGCONT.
    func resume() {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, SIGCONT)
    }

    func stop() {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

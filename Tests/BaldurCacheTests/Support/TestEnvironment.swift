import BaldurCache
import Foundation
import Testing

/// The servers `scripts/run-tests.sh` started. A missing variable fails the
/// test loudly: these tests never skip for want of a server.
enum TestEnvironment {
    struct Missing: Error, CustomStringConvertible {
        let name: String
        var description: String { "\(name) is not set: run the tests with scripts/run-tests.sh" }
    }

    static func value(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { throw Missing(name: name) }
        return value
    }

    /// Whether the suite runs under ThreadSanitizer (`scripts/run-tests.sh
    /// --sanitize=thread` says so in `BALDUR_TEST_SANITIZER`). Every memory
    /// access is then checked, at 5-10 times the CPU: the few tests whose
    /// point is volume (a million keys) run a fifth of it there, enough for
    /// what the sanitizer looks for (two threads touching one thing), while
    /// the plain run keeps the full volume.
    static var underThreadSanitizer: Bool { ProcessInfo.processInfo.environment["BALDUR_TEST_SANITIZER"] == "thread" }

    /// `full`, or a fifth of it under ThreadSanitizer (see ``underThreadSanitizer``).
    static func volume(_ full: Int) -> Int { underThreadSanitizer ? full / 5 : full }

    /// A new directory for one test's own servers. Under the run's temp
    /// directory (`BALDUR_TEST_TMPDIR`) when `scripts/run-tests.sh` runs the
    /// suite: a server writes its PID there (`pid`, or a group's `pids`), and
    /// when the test process ends before it stops them (ThreadSanitizer's
    /// `halt_on_error`, a crash) the script stops what is listed there.
    static func serverDirectory(_ prefix: String) throws -> URL {
        let root = ProcessInfo.processInfo.environment["BALDUR_TEST_TMPDIR"].map { URL(fileURLWithPath: $0).appendingPathComponent("tests") }
            ?? FileManager.default.temporaryDirectory
        let directory = root.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// The plain server's URL.
    static func url() throws -> String { try value("BALDUR_TEST_REDIS_URL") }

    static func configuration() throws -> RedisConfiguration { try RedisConfiguration(url: url()) }

    static func client(maxConnections: Int = 8) throws -> RedisClient {
        var configuration = try configuration()
        configuration.pool.maxConnections = maxConnections
        return try RedisClient(configuration: configuration)
    }

    static func authAddress() throws -> RedisServerAddress {
        .tcp(host: try value("BALDUR_TEST_REDIS_AUTH_HOST"), port: Int(try value("BALDUR_TEST_REDIS_AUTH_PORT"))!)
    }

    static func redisServerBinary() throws -> String { try value("BALDUR_TEST_REDIS_SERVER") }

    /// The directory of certificates `scripts/tls-certs.sh` made.
    static func tlsDirectory() throws -> String { try value("BALDUR_TEST_TLS_DIR") }

    /// A file in ``tlsDirectory()``: `ca.crt`, `client.key`, ...
    static func tlsFile(_ name: String) throws -> String { try tlsDirectory() + "/" + name }

    /// The TLS server (no client certificate asked), by the name its
    /// certificate carries, trusting the test CA.
    static func tlsURL(host: String = "localhost", query: String = "") throws -> String {
        "rediss://\(host):\(try value("BALDUR_TEST_REDIS_TLS_PORT"))/0?ssl_ca_certs=\(try tlsFile("ca.crt"))\(query)"
    }

    /// The shared Sentinel group's master, through its sentinels, with both passwords.
    static func sentinelConfiguration() throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: value("BALDUR_TEST_SENTINEL_URL"))
        configuration.password = try value("BALDUR_TEST_SENTINEL_MASTER_PASSWORD")
        configuration.sentinelPassword = try value("BALDUR_TEST_SENTINEL_PASSWORD")
        return configuration
    }

    /// The TLS server that requires a client certificate, trusting the test CA.
    static func mutualTLSURL(query: String = "") throws -> String {
        "rediss://localhost:\(try value("BALDUR_TEST_REDIS_MTLS_PORT"))/0?ssl_ca_certs=\(try tlsFile("ca.crt"))\(query)"
    }
}

/// A key namespace of one test: every key it touches starts with a fresh UUID.
struct TestKeys {
    let prefix = "bctest:\(UUID().uuidString):"
    func callAsFunction(_ name: String) -> String { prefix + name }
}

/// Picks a TCP port on 127.0.0.1 that nothing listens on right now.
func freeLoopbackPort() throws -> Int {
    let (fd, port) = try boundLoopbackSocket()
    close(fd)
    return port
}

/// A TCP socket bound to a free port on 127.0.0.1 (not listening yet); the caller closes it.
func boundLoopbackSocket() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else {
        close(fd)
        throw POSIXError(.EADDRINUSE)
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// The file descriptors of this process that are TCP sockets connected to
/// `port` on loopback. Tests run in parallel, so a process-wide count would
/// see other tests' sockets; this one sees only the server under test.
func openSocketDescriptors(toPort port: Int) throws -> Int {
    var inodes = Set<String>()
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // /proc files report size 0: read them as a stream.
        guard let data = FileHandle(forReadingAtPath: table)?.readDataToEndOfFile() else { continue }
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n").dropFirst() {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            guard columns.count > 9, let remotePort = columns[2].split(separator: ":").last,
                  Int(remotePort, radix: 16) == port else { continue }
            inodes.insert(String(columns[9]))
        }
    }
    var count = 0
    for fd in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"),
              target.hasPrefix("socket:[") else { continue }
        if inodes.contains(String(target.dropFirst(8).dropLast())) { count += 1 }
    }
    return count
}

/// The number of file descriptors this process has open.
func openFileDescriptorCount() throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
}

/// Where one Redis server listens.
public enum RedisServerAddress: Sendable, Hashable, CustomStringConvertible {
    /// A TCP host (name, IPv4 or IPv6 literal) and port.
    case tcp(host: String, port: Int)
    /// A unix domain socket path.
    case unix(path: String)

    /// `host:port`, `[v6]:port` or `unix:/path`.
    public var description: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}

extension RedisServerAddress {
    /// Checks that the address can be connected to as written: a TCP port
    /// in 1...65535 and a host made of the characters of host names and IP
    /// literals (letters, digits, `.`, `-`, `_`, and `:` `%` for IPv6), or a
    /// unix socket path with no NUL that fits `sun_path`.
    ///
    /// - Throws: ``RedisError/Code/invalidConfiguration`` naming the problem.
    ///   The text is passed to the C resolver as a C string, so a NUL would
    ///   silently cut the host short: `127.0.0.1\0.evil.example` must never
    ///   mean `127.0.0.1`.
    func validate() throws(RedisError) {
        switch self {
        case .tcp(let host, let port):
            guard (1...65535).contains(port) else {
                throw RedisError(.invalidConfiguration, "a Redis port must be between 1 and 65535, not \(port)")
            }
            guard !host.isEmpty, host.utf8.count <= 253 else {
                throw RedisError(.invalidConfiguration, "a Redis host must have 1 to 253 characters")
            }
            guard host.unicodeScalars.allSatisfy(\.isHostCharacter) else {
                let shown = host.unicodeScalars.map { $0.isHostCharacter ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
                throw RedisError(.invalidConfiguration, "the Redis host '\(shown)' has characters no host name or IP address has")
            }
        case .unix(let path):
            guard !path.isEmpty, !path.utf8.contains(0) else {
                throw RedisError(.invalidConfiguration, "a unix socket path must be non-empty and contain no NUL")
            }
            guard path.utf8.count < 108 else {
                throw RedisError(.invalidConfiguration, "a unix socket path must be shorter than 108 bytes, not \(path.utf8.count)")
            }
        }
    }
}

extension Unicode.Scalar {
    /// A letter, digit, `.`, `-`, `_`, `:` or `%`: what host names and IP
    /// literals (with an IPv6 zone) are written with.
    var isHostCharacter: Bool {
        switch self {
        case "a"..."z", "A"..."Z", "0"..."9", ".", "-", "_", ":", "%": return true
        default: return false
        }
    }

    /// Printable ASCII other than space: what a Sentinel master name may hold.
    var isPrintableASCIIWord: Bool { value > 0x20 && value < 0x7F }
}

/// How the servers behind a configuration are arranged.
public enum RedisTopology: Sendable, Hashable {
    /// One server (or a proxy in front of several).
    case standalone(RedisServerAddress)
    /// A master found through Redis Sentinel: the master's name and the sentinels to ask.
    case sentinel(masterName: String, sentinels: [RedisServerAddress])
    /// A Redis Cluster, found from these seed nodes.
    case cluster(seeds: [RedisServerAddress])
}

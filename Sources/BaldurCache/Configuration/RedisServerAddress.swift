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

/// How the servers behind a configuration are arranged.
public enum RedisTopology: Sendable, Hashable {
    /// One server (or a proxy in front of several).
    case standalone(RedisServerAddress)
    /// A master found through Redis Sentinel: the master's name and the sentinels to ask.
    case sentinel(masterName: String, sentinels: [RedisServerAddress])
    /// A Redis Cluster, found from these seed nodes.
    case cluster(seeds: [RedisServerAddress])
}

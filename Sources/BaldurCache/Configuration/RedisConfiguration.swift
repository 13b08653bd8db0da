import Foundation

/// How to reach Redis and how the connection pool behaves.
///
/// Build one from a URL, from the `BALDUR_REDIS_*` environment, or field by
/// field:
/// ```swift
/// var configuration = try RedisConfiguration(url: "redis://:secret@127.0.0.1:6379/2")
/// configuration.pool.maxConnections = 16
/// let client = try RedisClient(configuration: configuration)
/// ```
///
/// | URL form | meaning |
/// |---|---|
/// | `redis://[[user]:password@]host[:port][/db]` | TCP, port 6379 by default |
/// | `unix:///path/to.sock?db=N[&password=P]` | unix socket |
/// | `rediss://[[user]:password@]host[:port][/db][?ssl_...]` | TCP with TLS (see ``RedisTLSConfiguration``) |
/// | `redis+sentinel://master@h1:p1,h2:p2/db` | Sentinel: the master it names, failovers followed |
/// | `redis+cluster://h1:p1,h2:p2` | Cluster: found from these seeds, routed by key slot |
/// | `rediss+sentinel://...`, `rediss+cluster://...` | the same over TLS |
///
/// ``description`` masks the password, so a configuration can be logged.
public struct RedisConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// The servers to talk to. Default: `localhost:6379`.
    public var topology: RedisTopology = .standalone(.tcp(host: "localhost", port: 6379))
    /// The database index sent with `SELECT` at connect. Default 0.
    public var database: Int = 0
    /// The ACL user sent with `AUTH user password`. Default none.
    public var username: String?
    /// The password sent with `AUTH` at connect. Default none. Never printed.
    public var password: String?
    /// The password for the sentinels (Sentinel topology only). Never printed.
    public var sentinelPassword: String?
    /// TLS for every connection (`rediss://`); `nil` talks plain TCP. Default `nil`.
    public var tls: RedisTLSConfiguration?
    /// How long one command may take to be written and answered, on both
    /// APIs (a blocking command: see ``blockingCommandTimeout``); `nil` waits
    /// forever. Default 5 s, allowed 1 ms to 100 years
    /// (`BALDUR_REDIS_SOCKET_TIMEOUT`, redis-py's `socket_timeout`).
    public var commandTimeout: Duration? = .seconds(5)
    /// The former name of ``commandTimeout``.
    @available(*, deprecated, renamed: "commandTimeout")
    public var socketTimeout: Duration? {
        get { commandTimeout }
        set { commandTimeout = newValue }
    }
    /// How long a blocking command's reply may take beyond the time it asks
    /// the server to block: `BLPOP key 10` may take 10 s plus this, `WAIT 1
    /// 500` 500 ms plus this (`commandTimeout` alone does not apply to them),
    /// and one that blocks until data arrives (a timeout of 0) waits without
    /// limit. `nil` (the default): ``commandTimeout``. Allowed 1 ms to 100 years.
    public var blockingCommandTimeout: Duration?
    /// How long connecting may take. Default 5 s, allowed 1 ms to 100 years
    /// (`BALDUR_REDIS_SOCKET_CONNECT_TIMEOUT`).
    public var connectTimeout: Duration = .seconds(5)
    /// The connection pools: how many connections, how long a caller waits
    /// for one, how idle ones are checked.
    public var pool = Pool()
    /// When a failed call is tried again.
    public var retry = Retry()

    /// The connection pools' settings (one pool per server, see ``RedisClient``).
    public struct Pool: Sendable, Hashable {
        /// The most connections callers hold at once, per server, both APIs
        /// together: each blocking call holds one, and so does each of the
        /// async API's blocking commands and transactions (its other calls
        /// share ``pipelinedConnections``, which are not counted). Idle ones
        /// count until a caller of the other API needs the place. Default
        /// 100, allowed 1...10,000 (`BALDUR_REDIS_MAX_CONNECTIONS`).
        public var maxConnections: Int = 100
        /// How many connections the async API keeps per server for
        /// pipelining: concurrent calls are written back to back over them,
        /// round-robin. Default 2, allowed 1...64.
        public var pipelinedConnections: Int = 2
        /// An idle connection older than this is checked with `PING` before
        /// reuse. Default 30 s, allowed 5...300 s (`BALDUR_REDIS_HEALTH_CHECK_INTERVAL`).
        public var healthCheckInterval: Duration = .seconds(30)
        /// How long a caller waits for a connection when all
        /// ``maxConnections`` are held before failing with
        /// ``RedisError/Code/poolExhausted``. Default 5 s, allowed 0 to 100 years.
        public var timeout: Duration = .seconds(5)
        /// How long a blocking call's thread polls its socket for a reply
        /// before sleeping in `read(2)`; `.zero` never polls. Spinning only
        /// happens while few pooled connections of the process are in use,
        /// and backs off on connections whose replies are slow; see the
        /// README's performance section. Default 100 µs, allowed 0...10 ms
        /// (`BALDUR_REDIS_SPIN_WAIT_US`).
        public var spinWait: Duration = .microseconds(100)

        /// The documented defaults.
        public init() {}
    }

    /// When a failed call is tried again (see ``RedisClient`` for exactly which).
    public struct Retry: Sendable, Hashable {
        /// Send a read-only command once more, on a fresh connection, after
        /// a timeout or a dropped connection. Default `true`
        /// (`BALDUR_REDIS_RETRY_ON_TIMEOUT`, redis-py's `retry_on_timeout`).
        public var onTimeout: Bool = true
        /// How long a lock wait rides out a server it cannot reach: a wait
        /// that has failed to reach Redis for this long (every attempt and
        /// every wait for a release failing with a connection error) ends
        /// with that error, even without a `blockingTimeout`. A restart
        /// shorter than this goes unnoticed by the waiters. Default 30 s,
        /// allowed 1 s to 1 hour.
        public var lockOutageLimit: Duration = .seconds(30)

        /// The documented defaults.
        public init() {}
    }

    /// The former name of ``Pool/maxConnections``.
    @available(*, deprecated, message: "use pool.maxConnections")
    public var maxConnections: Int {
        get { pool.maxConnections }
        set { pool.maxConnections = newValue }
    }
    /// The former name of ``Pool/pipelinedConnections``.
    @available(*, deprecated, message: "use pool.pipelinedConnections")
    public var pipelinedConnections: Int {
        get { pool.pipelinedConnections }
        set { pool.pipelinedConnections = newValue }
    }
    /// The former name of ``Pool/healthCheckInterval``.
    @available(*, deprecated, message: "use pool.healthCheckInterval")
    public var healthCheckInterval: Duration {
        get { pool.healthCheckInterval }
        set { pool.healthCheckInterval = newValue }
    }
    /// The former name of ``Pool/timeout``.
    @available(*, deprecated, message: "use pool.timeout")
    public var poolTimeout: Duration {
        get { pool.timeout }
        set { pool.timeout = newValue }
    }
    /// The former name of ``Pool/spinWait``.
    @available(*, deprecated, message: "use pool.spinWait")
    public var spinWait: Duration {
        get { pool.spinWait }
        set { pool.spinWait = newValue }
    }
    /// The former name of ``Retry/onTimeout``.
    @available(*, deprecated, message: "use retry.onTimeout")
    public var retryOnTimeout: Bool {
        get { retry.onTimeout }
        set { retry.onTimeout = newValue }
    }
    /// The former name of ``Retry/lockOutageLimit``.
    @available(*, deprecated, message: "use retry.lockOutageLimit")
    public var lockOutageLimit: Duration {
        get { retry.lockOutageLimit }
        set { retry.lockOutageLimit = newValue }
    }

    /// A configuration for `localhost:6379`, database 0, with the documented defaults.
    public init() {}

    /// A configuration for one server with the documented defaults.
    public init(address: RedisServerAddress, database: Int = 0, username: String? = nil, password: String? = nil) {
        self.topology = .standalone(address)
        self.database = database
        self.username = username
        self.password = password
    }

    /// Parses a Redis URL (see the table above).
    ///
    /// - Throws: ``RedisError/Code/invalidConfiguration`` naming the bad part.
    public init(url: String) throws(RedisError) {
        self = try URLParser.parse(url).configuration
    }

    /// Reads `BALDUR_REDIS_URL` (default `redis://localhost:6379/0`) and the
    /// other `BALDUR_REDIS_*` variables.
    ///
    /// `BALDUR_REDIS_PASSWORD` and `BALDUR_REDIS_USERNAME` fill in credentials
    /// the URL does not carry; the URL's own credentials win. The
    /// `BALDUR_REDIS_SSL_*` variables (see ``RedisTLSConfiguration``) fill in
    /// TLS settings a `rediss://` URL does not carry; with a plain URL they
    /// are an error rather than silently unused.
    ///
    /// - Parameter environment: The variables to read; the process environment by default.
    /// - Throws: ``RedisError/Code/invalidConfiguration`` naming the variable and its bad value.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(RedisError) -> RedisConfiguration {
        func value(_ name: String) -> String? {
            guard let raw = environment[name]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
            return raw
        }
        let parsed = try URLParser.parse(value("BALDUR_REDIS_URL") ?? "redis://localhost:6379/0")
        var configuration = parsed.configuration
        if configuration.password == nil { configuration.password = environment["BALDUR_REDIS_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 } }
        if configuration.username == nil { configuration.username = value("BALDUR_REDIS_USERNAME") }
        if let secret = environment["BALDUR_REDIS_SENTINEL_PASSWORD"], !secret.isEmpty { configuration.sentinelPassword = secret }
        for setting in RedisTLSConfiguration.settingNames {
            let name = "BALDUR_REDIS_" + setting.uppercased()
            guard let raw = value(name) else { continue }
            guard var tls = configuration.tls else {
                throw RedisError(.invalidConfiguration, "\(name) is set but BALDUR_REDIS_URL does not use TLS (rediss://)")
            }
            // The URL's own settings win, as its credentials do.
            if !parsed.tlsSettings.contains(setting) {
                try tls.apply(setting, raw, source: name)
                configuration.tls = tls
            }
        }
        if let raw = value("BALDUR_REDIS_SOCKET_TIMEOUT") {
            configuration.commandTimeout = try seconds(raw, name: "BALDUR_REDIS_SOCKET_TIMEOUT")
        }
        if let raw = value("BALDUR_REDIS_SOCKET_CONNECT_TIMEOUT") {
            configuration.connectTimeout = try seconds(raw, name: "BALDUR_REDIS_SOCKET_CONNECT_TIMEOUT")
        }
        if let raw = value("BALDUR_REDIS_RETRY_ON_TIMEOUT") {
            switch raw.lowercased() {
            case "1", "true", "yes", "on": configuration.retry.onTimeout = true
            case "0", "false", "no", "off": configuration.retry.onTimeout = false
            default: throw RedisError(.invalidConfiguration, "BALDUR_REDIS_RETRY_ON_TIMEOUT must be true or false, not '\(raw)'")
            }
        }
        if let raw = value("BALDUR_REDIS_MAX_CONNECTIONS") {
            guard let count = Int(raw) else {
                throw RedisError(.invalidConfiguration, "BALDUR_REDIS_MAX_CONNECTIONS must be a whole number, not '\(raw)'")
            }
            configuration.pool.maxConnections = count
        }
        if let raw = value("BALDUR_REDIS_HEALTH_CHECK_INTERVAL") {
            configuration.pool.healthCheckInterval = try seconds(raw, name: "BALDUR_REDIS_HEALTH_CHECK_INTERVAL")
        }
        if let raw = value("BALDUR_REDIS_SPIN_WAIT_US") {
            guard let microseconds = Int64(raw) else {
                throw RedisError(.invalidConfiguration, "BALDUR_REDIS_SPIN_WAIT_US must be a whole number of microseconds, not '\(raw)'")
            }
            configuration.pool.spinWait = .microseconds(microseconds)
        }
        try configuration.validate()
        return configuration
    }

    /// Checks every value's range.
    ///
    /// - Throws: ``RedisError/Code/invalidConfiguration`` naming the first bad field.
    public func validate() throws(RedisError) {
        guard pool.maxConnections >= 1 else {
            throw RedisError(.invalidConfiguration, "pool.maxConnections must be at least 1, not \(pool.maxConnections)")
        }
        guard pool.maxConnections <= Self.mostConnections else {
            throw RedisError(.invalidConfiguration, "pool.maxConnections must be at most \(Self.mostConnections), not \(pool.maxConnections)")
        }
        guard (1...64).contains(pool.pipelinedConnections) else {
            throw RedisError(.invalidConfiguration, "pool.pipelinedConnections must be between 1 and 64, not \(pool.pipelinedConnections)")
        }
        guard pool.healthCheckInterval >= .seconds(5), pool.healthCheckInterval <= .seconds(300) else {
            throw RedisError(.invalidConfiguration, "pool.healthCheckInterval must be between 5 and 300 seconds, not \(pool.healthCheckInterval.readable)")
        }
        _ = try connectTimeout.checked("connectTimeout", in: .milliseconds(1)...Duration.longestAccepted, code: .invalidConfiguration)
        if let commandTimeout {
            _ = try commandTimeout.checked("commandTimeout", in: .milliseconds(1)...Duration.longestAccepted, code: .invalidConfiguration)
        }
        if let blockingCommandTimeout {
            _ = try blockingCommandTimeout.checked("blockingCommandTimeout", in: .milliseconds(1)...Duration.longestAccepted, code: .invalidConfiguration)
        }
        _ = try pool.timeout.checked("pool.timeout", in: .zero...Duration.longestAccepted, code: .invalidConfiguration)
        _ = try retry.lockOutageLimit.checked("retry.lockOutageLimit", in: .seconds(1)...Duration.seconds(3600), code: .invalidConfiguration)
        guard pool.spinWait >= .zero, pool.spinWait <= .milliseconds(10) else {
            throw RedisError(.invalidConfiguration, "pool.spinWait must be between 0 and 10 ms, not \(pool.spinWait)")
        }
        guard database >= 0, database <= Int(Int32.max) else {
            throw RedisError(.invalidConfiguration, "database must be between 0 and \(Int32.max), not \(database)")
        }
        if let tls {
            try tls.validate()
            if case .standalone(.unix) = topology {
                throw RedisError(.invalidConfiguration, "TLS needs a TCP address; Redis does not serve TLS on a unix socket")
            }
        }
        switch topology {
        case .standalone(let address):
            try address.validate()
        case .sentinel(let master, let sentinels):
            guard !master.isEmpty, master.unicodeScalars.allSatisfy(\.isPrintableASCIIWord) else {
                throw RedisError(.invalidConfiguration, "the Sentinel master name must be non-empty printable ASCII without spaces")
            }
            guard !sentinels.isEmpty else { throw RedisError(.invalidConfiguration, "Sentinel needs at least one sentinel address") }
            for sentinel in sentinels { try sentinel.validate() }
        case .cluster(let seeds):
            guard !seeds.isEmpty else { throw RedisError(.invalidConfiguration, "Cluster needs at least one seed address") }
            for seed in seeds { try seed.validate() }
            guard database == 0 else {
                throw RedisError(.invalidConfiguration, "Redis Cluster has only database 0, not \(database)")
            }
        }
    }

    /// The longest duration any BaldurCache call accepts: 100 years. TTLs,
    /// lock timeouts and waits, and every timeout here are checked against
    /// it where they enter, so no deadline arithmetic can overflow.
    public static var longestDuration: Duration { .longestAccepted }

    /// The most connections one pool may open: 10,000.
    public static let mostConnections = 10_000

    /// The configuration as a URL with the password masked, for logs.
    public var description: String {
        var credentials = ""
        if username != nil || password != nil {
            credentials = "\(username ?? ""):\(password == nil ? "" : "***")@"
        }
        let secure = tls == nil ? "" : "s"
        let query = tls.map { "?\($0)" } ?? ""
        switch topology {
        case .standalone(.tcp(let host, let port)):
            let shown = host.contains(":") ? "[\(host)]" : host
            return "redis\(secure)://\(credentials)\(shown):\(port)/\(database)\(query)"
        case .standalone(.unix(let path)):
            return "unix://\(credentials)\(path)?db=\(database)"
        case .sentinel(let master, let sentinels):
            let hosts = sentinels.map(\.description).joined(separator: ",")
            return "redis\(secure)+sentinel://\(credentials)\(master)@\(hosts)/\(database)\(query)"
        case .cluster(let seeds):
            return "redis\(secure)+cluster://\(credentials)\(seeds.map(\.description).joined(separator: ","))\(query)"
        }
    }

    private static func seconds(_ raw: String, name: String) throws(RedisError) -> Duration {
        guard let value = Double(raw), value > 0, let duration = Duration.seconds(checking: value) else {
            throw RedisError(.invalidConfiguration, "\(name) must be a positive number of seconds up to \(Duration.longestAccepted.readable), not '\(raw)'")
        }
        return duration
    }
}

/// Parses the URL forms of ``RedisConfiguration``. Errors name the bad part
/// and never repeat the password.
private enum URLParser {
    /// The configuration, and which TLS settings the URL's query carried.
    static func parse(_ url: String) throws(RedisError) -> (configuration: RedisConfiguration, tlsSettings: Set<String>) {
        guard let schemeEnd = url.range(of: "://") else {
            // Without a scheme nothing tells a password from a host: do not echo the text.
            throw RedisError(.invalidConfiguration, "Redis URL has no scheme (expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)")
        }
        var scheme = url[..<schemeEnd.lowerBound].lowercased()
        var configuration = RedisConfiguration()
        // rediss, rediss+sentinel, rediss+cluster: the plain forms over TLS.
        if scheme == "rediss" || scheme.hasPrefix("rediss+") {
            scheme.remove(at: scheme.index(scheme.startIndex, offsetBy: 5))
            configuration.tls = RedisTLSConfiguration()
        }
        var rest = String(url[schemeEnd.upperBound...])
        var query: [String: String] = [:]
        if let mark = rest.firstIndex(of: "?") {
            query = try parseQuery(String(rest[rest.index(after: mark)...]), url: url)
            rest = String(rest[..<mark])
        }
        switch scheme {
        case "redis":
            let (credentials, hostPart) = splitCredentials(rest)
            try apply(credentials, to: &configuration, url: url)
            let (authority, path) = splitPath(hostPart)
            configuration.topology = .standalone(try parseHost(authority.isEmpty ? "localhost" : authority, url: url))
            configuration.database = try parseDatabase(path, query: query, url: url)
        case "unix":
            let (credentials, path) = splitCredentials(rest)
            try apply(credentials, to: &configuration, url: url)
            guard path.hasPrefix("/") else { throw invalid(url, "needs an absolute socket path (unix:///path/to.sock)") }
            configuration.topology = .standalone(.unix(path: path))
            configuration.database = try parseDatabase("", query: query, url: url)
        case "redis+sentinel":
            guard let at = rest.lastIndex(of: "@") else {
                throw invalid(url, "needs a master name before the sentinels (redis+sentinel://master@host:port,...)")
            }
            let (hosts, path) = splitPath(String(rest[rest.index(after: at)...]))
            var master = String(rest[..<at])
            if let inner = master.lastIndex(of: "@") {
                try apply(String(master[..<inner]), to: &configuration, url: url)
                master = String(master[master.index(after: inner)...])
            }
            guard !master.isEmpty, !master.contains(":") else {
                throw invalid(url, "needs a master name before the sentinels (redis+sentinel://[[user]:password@]master@host:port,...)")
            }
            guard let decodedMaster = master.removingPercentEncoding, !decodedMaster.isEmpty else {
                throw invalid(url, "has a badly percent-encoded master name")
            }
            master = decodedMaster
            configuration.topology = .sentinel(masterName: master, sentinels: try parseHostList(hosts, defaultPort: 26379, url: url))
            configuration.database = try parseDatabase(path, query: query, url: url)
        case "redis+cluster":
            let (credentials, hostPart) = splitCredentials(rest)
            try apply(credentials, to: &configuration, url: url)
            let (hosts, path) = splitPath(hostPart)
            configuration.topology = .cluster(seeds: try parseHostList(hosts, defaultPort: 6379, url: url))
            // A cluster has database 0 only; validate() refuses another, rather than ignore it.
            configuration.database = try parseDatabase(path, query: query, url: url)
        default:
            let written = url[..<schemeEnd.lowerBound].lowercased()
            throw invalid(url, "has an unknown scheme '\(written)' (expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)")
        }
        var tlsSettings: Set<String> = []
        for setting in RedisTLSConfiguration.settingNames {
            guard let value = query[setting] else { continue }
            guard var tls = configuration.tls else {
                throw invalid(url, "sets \(setting) but does not use TLS (write rediss://)")
            }
            try tls.apply(setting, value, source: "\(setting) in the Redis URL")
            configuration.tls = tls
            tlsSettings.insert(setting)
        }
        if let password = query["password"] { configuration.password = password }
        if let user = query["username"] ?? query["user"] { configuration.username = user }
        try configuration.validate()
        return (configuration, tlsSettings)
    }

    /// Splits `user:password@rest` at the last `@`.
    private static func splitCredentials(_ text: String) -> (String?, String) {
        guard let at = text.lastIndex(of: "@") else { return (nil, text) }
        return (String(text[..<at]), String(text[text.index(after: at)...]))
    }

    private static func splitPath(_ text: String) -> (String, String) {
        guard let slash = text.firstIndex(of: "/") else { return (text, "") }
        return (String(text[..<slash]), String(text[text.index(after: slash)...]))
    }

    private static func apply(_ credentials: String?, to configuration: inout RedisConfiguration, url: String) throws(RedisError) {
        guard let credentials, !credentials.isEmpty else { return }
        let user: Substring
        let password: Substring?
        if let colon = credentials.firstIndex(of: ":") {
            user = credentials[..<colon]
            password = credentials[credentials.index(after: colon)...]
        } else {
            // redis://secret@host is the password alone, as redis-py reads it.
            user = ""
            password = Substring(credentials)
        }
        guard let decodedUser = String(user).removingPercentEncoding else {
            throw invalid(url, "has a badly percent-encoded user name")
        }
        var decodedPassword: String?
        if let password {
            // A password that does not decode is an error, never "no password":
            // connecting without AUTH would hide the typo until production.
            guard let decoded = String(password).removingPercentEncoding else {
                throw invalid(url, "has a badly percent-encoded password (write % as %25)")
            }
            decodedPassword = decoded
        }
        configuration.username = decodedUser.isEmpty ? nil : decodedUser
        configuration.password = (decodedPassword?.isEmpty ?? true) ? nil : decodedPassword
    }

    private static func parseHost(_ authority: String, url: String) throws(RedisError) -> RedisServerAddress {
        try parseHost(authority, defaultPort: 6379, url: url)
    }

    private static func parseHost(_ authority: String, defaultPort: Int, url: String) throws(RedisError) -> RedisServerAddress {
        var host = authority
        var portText: String?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw invalid(url, "has an unclosed IPv6 address '\(authority)'") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portText = String(after.dropFirst()) } else if !after.isEmpty {
                throw invalid(url, "has junk after the IPv6 address: '\(after)'")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            portText = String(authority[authority.index(after: colon)...])
        }
        guard !host.isEmpty else { throw invalid(url, "has an empty host in '\(authority)'") }
        var port = defaultPort
        if let portText {
            // Digits only: Int("+6379") would parse, and no URL writes a port that way.
            guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy({ (48...57).contains($0) }),
                  let parsed = Int(portText), (1...65535).contains(parsed) else {
                throw invalid(url, "has a bad port '\(portText)' (expected 1-65535)")
            }
            port = parsed
        }
        return .tcp(host: host, port: port)
    }

    private static func parseHostList(_ text: String, defaultPort: Int, url: String) throws(RedisError) -> [RedisServerAddress] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !text.isEmpty, !parts.contains(where: \.isEmpty) else { throw invalid(url, "needs a comma-separated list of host:port") }
        var addresses: [RedisServerAddress] = []
        for part in parts { addresses.append(try parseHost(part, defaultPort: defaultPort, url: url)) }
        return addresses
    }

    private static func parseDatabase(_ path: String, query: [String: String], url: String) throws(RedisError) -> Int {
        let text = path.isEmpty ? query["db"] : path
        guard let text, !text.isEmpty else { return 0 }
        guard let database = Int(text), database >= 0 else {
            throw invalid(url, "has a bad database '\(text)' (expected a number 0 or above)")
        }
        return database
    }

    private static func parseQuery(_ text: String, url: String) throws(RedisError) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&") where !pair.isEmpty {
            let pieces = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pieces.count == 2, let key = String(pieces[0]).removingPercentEncoding,
                  let value = String(pieces[1]).removingPercentEncoding
            else {
                let name = pieces.first.map(String.init) ?? ""
                throw invalid(url, "has a malformed query parameter '\(name)'")
            }
            let name = key.lowercased()
            guard result[name] == nil else { throw invalid(url, "gives the query parameter '\(name)' twice (give it once)") }
            if name.hasPrefix("ssl_"), !RedisTLSConfiguration.settingNames.contains(name) {
                let known = RedisTLSConfiguration.settingNames.sorted().joined(separator: ", ")
                throw invalid(url, "has an unknown TLS parameter '\(name)' (known: \(known))")
            }
            result[name] = value
        }
        return result
    }

    private static func invalid(_ url: String, _ problem: String) -> RedisError {
        RedisError(.invalidConfiguration, "Redis URL '\(mask(url))' \(problem)")
    }

    /// The URL with any password replaced by `***`.
    static func mask(_ url: String) -> String {
        var masked = url
        if let schemeEnd = masked.range(of: "://"), let at = masked[schemeEnd.upperBound...].lastIndex(of: "@") {
            let credentials = masked[schemeEnd.upperBound..<at]
            if let colon = credentials.firstIndex(of: ":") {
                masked.replaceSubrange(masked.index(after: colon)..<at, with: "***")
            } else if !credentials.isEmpty, !masked.lowercased().hasPrefix("redis+sentinel") {
                masked.replaceSubrange(credentials.startIndex..<at, with: "***")
            }
        }
        if let range = masked.range(of: "password=") {
            let end = masked[range.upperBound...].firstIndex(of: "&") ?? masked.endIndex
            masked.replaceSubrange(range.upperBound..<end, with: "***")
        }
        return masked
    }
}

extension RedisConfiguration {
    /// `url` with its password masked, for logs and error messages.
    public static func maskedURL(_ url: String) -> String { URLParser.mask(url) }
}


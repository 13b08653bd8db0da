import BaldurCache
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    @Test("redis:// URLs parse host, port, credentials and database")
    func redisURL() throws {
        let full = try RedisConfiguration(url: "redis://alice:s%40cret@cache.internal:6380/4")
        #expect(full.topology == .standalone(.tcp(host: "cache.internal", port: 6380)))
        #expect(full.username == "alice")
        #expect(full.password == "s@cret")
        #expect(full.database == 4)

        let passwordOnly = try RedisConfiguration(url: "redis://:pw@127.0.0.1")
        #expect(passwordOnly.username == nil)
        #expect(passwordOnly.password == "pw")
        #expect(passwordOnly.topology == .standalone(.tcp(host: "127.0.0.1", port: 6379)))
        #expect(passwordOnly.database == 0)

        let ipv6 = try RedisConfiguration(url: "redis://[::1]:7000/1")
        #expect(ipv6.topology == .standalone(.tcp(host: "::1", port: 7000)))
    }

    @Test("unix:// URLs take the socket path and ?db= / ?password=")
    func unixURL() throws {
        let configuration = try RedisConfiguration(url: "unix:///run/redis/redis.sock?db=2&password=pw")
        #expect(configuration.topology == .standalone(.unix(path: "/run/redis/redis.sock")))
        #expect(configuration.database == 2)
        #expect(configuration.password == "pw")
        #expect(!configuration.description.contains("pw&") && configuration.description.contains("***"))
    }

    @Test("sentinel and cluster URLs parse into their own kinds; both clients connect lazily; a cluster has only database 0")
    func sentinelAndCluster() throws {
        let sentinel = try RedisConfiguration(url: "redis+sentinel://mymaster@10.0.0.1:26379,10.0.0.2:26380/1")
        #expect(sentinel.topology == .sentinel(masterName: "mymaster", sentinels: [
            .tcp(host: "10.0.0.1", port: 26379), .tcp(host: "10.0.0.2", port: 26380),
        ]))
        #expect(sentinel.database == 1)
        // The master name is percent-decoded, as the rest of the URL is.
        let encoded = try RedisConfiguration(url: "redis+sentinel://cache%40eu%2D1@10.0.0.1:26379/0")
        #expect(encoded.topology == .sentinel(masterName: "cache@eu-1", sentinels: [.tcp(host: "10.0.0.1", port: 26379)]))
        let cluster = try RedisConfiguration(url: "redis+cluster://h1:7000,h2:7001")
        #expect(cluster.topology == .cluster(seeds: [.tcp(host: "h1", port: 7000), .tcp(host: "h2", port: 7001)]))

        // Sentinel and Cluster clients ask for the topology at their first call, not when made.
        for configuration in [sentinel, cluster] {
            let client = try RedisClient(configuration: configuration)
            #expect(client.openConnections == 0)
            client.close()
        }
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis+cluster://h1:7000,h2:7001/2") }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("only database 0") == true)
    }

    @Test("rediss:// URLs turn TLS on with verification, and take redis-py's ssl_* query settings")
    func tlsURL() throws {
        let plain = try RedisConfiguration(url: "rediss://:topsecret@cache.example.com:6380/2")
        #expect(plain.topology == .standalone(.tcp(host: "cache.example.com", port: 6380)))
        #expect(plain.database == 2)
        #expect(plain.tls == RedisTLSConfiguration())
        #expect(plain.tls?.peerVerification == .required && plain.tls?.checkHostName == true)
        #expect(plain.description == "rediss://:***@cache.example.com:6380/2?ssl_cert_reqs=required")

        let full = try RedisConfiguration(url: "rediss://h/0?ssl_cert_reqs=none&ssl_check_hostname=false&ssl_ca_certs=/etc/ca.pem&ssl_ca_path=/etc/certs&ssl_certfile=/c.pem&ssl_keyfile=/k.pem")
        var expected = RedisTLSConfiguration()
        expected.peerVerification = .insecureNoVerification
        expected.checkHostName = false
        expected.caFile = "/etc/ca.pem"
        expected.caDirectory = "/etc/certs"
        expected.certificateFile = "/c.pem"
        expected.privateKeyFile = "/k.pem"
        #expect(full.tls == expected)
        #expect(try RedisConfiguration(url: full.description).tls == expected, "the description parses back")
        #expect(try RedisConfiguration(url: "rediss://h?ssl_cert_reqs=CERT_OPTIONAL").tls?.peerVerification == .optional)

        let sentinel = try RedisConfiguration(url: "rediss+sentinel://mymaster@10.0.0.1:26379/1")
        #expect(sentinel.tls != nil)
        #expect(sentinel.description.hasPrefix("rediss+sentinel://"))
        #expect(try RedisConfiguration(url: "rediss+cluster://h1:7000").tls != nil)
        #expect(try RedisConfiguration(url: "redis://h").tls == nil)
    }

    @Test("TLS settings that cannot work are refused clearly, without the password", arguments: [
        ("redis://:topsecret@h/0?ssl_ca_certs=/ca.pem", "does not use TLS"),
        ("rediss://:topsecret@h/0?ssl_cert_reqs=maybe", "required, optional or none"),
        ("rediss://:topsecret@h/0?ssl_check_hostname=perhaps", "true or false"),
        ("rediss://:topsecret@h/0?ssl_keyfile=/k.pem", "needs certificateFile"),
        ("rediss://:topsecret@h/0?ssl_ca_certs=", "non-empty path"),
    ])
    func badTLSSettings(url: String, problem: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(problem) == true, "\(String(describing: error))")
        #expect(error?.message.contains("topsecret") == false)
    }

    @Test("BALDUR_REDIS_SSL_* fill in what a rediss:// URL leaves out, and are refused with a plain URL")
    func tlsEnvironment() throws {
        let configuration = try RedisConfiguration.fromEnvironment([
            "BALDUR_REDIS_URL": "rediss://h:6380/0?ssl_check_hostname=true",
            "BALDUR_REDIS_SSL_CA_CERTS": "/env/ca.pem",
            "BALDUR_REDIS_SSL_CHECK_HOSTNAME": "false",
            "BALDUR_REDIS_SSL_CERTFILE": "/env/c.pem",
            "BALDUR_REDIS_SSL_KEYFILE": "/env/k.pem",
            "BALDUR_REDIS_SSL_CERT_REQS": "optional",
            "BALDUR_REDIS_SSL_CA_PATH": "/env/certs",
        ])
        #expect(configuration.tls?.caFile == "/env/ca.pem")
        #expect(configuration.tls?.checkHostName == true, "the URL's own setting wins")
        #expect(configuration.tls?.certificateFile == "/env/c.pem")
        #expect(configuration.tls?.privateKeyFile == "/env/k.pem")
        #expect(configuration.tls?.peerVerification == .optional)
        #expect(configuration.tls?.caDirectory == "/env/certs")
        let plain = #expect(throws: RedisError.self) {
            try RedisConfiguration.fromEnvironment(["BALDUR_REDIS_URL": "redis://h/0", "BALDUR_REDIS_SSL_CA_CERTS": "/ca.pem"])
        }
        #expect(plain?.message.contains("BALDUR_REDIS_SSL_CA_CERTS") == true)
        let bad = #expect(throws: RedisError.self) {
            try RedisConfiguration.fromEnvironment(["BALDUR_REDIS_URL": "rediss://h/0", "BALDUR_REDIS_SSL_CERT_REQS": "sometimes"])
        }
        #expect(bad?.message.contains("BALDUR_REDIS_SSL_CERT_REQS") == true)
    }

    @Test("TLS over a unix socket is refused: Redis serves TLS on TCP only")
    func tlsOverUnix() {
        var configuration = RedisConfiguration(address: .unix(path: "/tmp/redis.sock"))
        configuration.tls = RedisTLSConfiguration()
        let error = #expect(throws: RedisError.self) { try configuration.validate() }
        #expect(error?.code == .invalidConfiguration)
    }

    @Test("malformed URLs name the bad part and never show the password", arguments: [
        ("redis://:hunter2@host:99999/0", "bad port '99999'"),
        ("redis://:hunter2@host:6379/x", "bad database 'x'"),
        ("redis://:hunter2@host:abc", "bad port 'abc'"),
        ("ftp://:hunter2@host", "unknown scheme 'ftp'"),
        ("hunter2-host:6379", "has no scheme"),
        ("unix://relative.sock", "absolute socket path"),
        ("redis+sentinel://:hunter2@host:1", "needs a master name"),
        ("redis+cluster://h1:1,,h2:2", "comma-separated list"),
        ("redis://:hunter2@[::1:6379", "unclosed IPv6"),
        // A typo in a TLS setting would leave verification on the system store, silently.
        ("rediss://:hunter2@host:6380/0?ssl_ca_cert=/etc/ca.pem", "unknown TLS parameter 'ssl_ca_cert'"),
        ("redis://:hunter2@host:6379/0?db=1&DB=2", "gives the query parameter 'db' twice"),
        ("rediss://:hunter2@host/0?ssl_cert_reqs=none&ssl_cert_reqs=required", "gives the query parameter 'ssl_cert_reqs' twice"),
        ("redis+sentinel://:hunter2@my%2@h:1", "badly percent-encoded master name"),
    ])
    func malformedURLs(url: String, expected: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("hunter2") == false)
    }

    @Test("description masks the password")
    func descriptionMasksPassword() throws {
        let configuration = try RedisConfiguration(url: "redis://bob:hunter2@127.0.0.1:6379/0")
        #expect(configuration.description == "redis://bob:***@127.0.0.1:6379/0")
        #expect(RedisConfiguration.maskedURL("redis://:hunter2@h/0") == "redis://:***@h/0")
        #expect(RedisConfiguration.maskedURL("redis://hunter2@h/0") == "redis://***@h/0")
    }

    @Test("BALDUR_REDIS_* variables apply, with their defaults")
    func environment() throws {
        let defaults = try RedisConfiguration.fromEnvironment([:])
        #expect(defaults.topology == .standalone(.tcp(host: "localhost", port: 6379)))
        #expect(defaults.pool.maxConnections == 100)
        #expect(defaults.pool.healthCheckInterval == .seconds(30))
        #expect(defaults.commandTimeout == .seconds(5))
        #expect(defaults.connectTimeout == .seconds(5))
        #expect(defaults.retry.onTimeout)
        #expect(defaults.pool.spinWait == .microseconds(100))

        let set = try RedisConfiguration.fromEnvironment([
            "BALDUR_REDIS_URL": "redis://127.0.0.1:7001/3",
            "BALDUR_REDIS_PASSWORD": "envpw",
            "BALDUR_REDIS_USERNAME": "envuser",
            "BALDUR_REDIS_SOCKET_TIMEOUT": "0.25",
            "BALDUR_REDIS_SOCKET_CONNECT_TIMEOUT": "2",
            "BALDUR_REDIS_RETRY_ON_TIMEOUT": "false",
            "BALDUR_REDIS_MAX_CONNECTIONS": "7",
            "BALDUR_REDIS_HEALTH_CHECK_INTERVAL": "60",
            "BALDUR_REDIS_SPIN_WAIT_US": "0",
        ])
        #expect(set.database == 3)
        #expect(set.password == "envpw")
        #expect(set.username == "envuser")
        #expect(set.commandTimeout == .milliseconds(250))
        #expect(set.connectTimeout == .seconds(2))
        #expect(!set.retry.onTimeout)
        #expect(set.pool.maxConnections == 7)
        #expect(set.pool.healthCheckInterval == .seconds(60))
        #expect(set.pool.spinWait == .zero)

        let urlWins = try RedisConfiguration.fromEnvironment(["BALDUR_REDIS_URL": "redis://:urlpw@h", "BALDUR_REDIS_PASSWORD": "envpw"])
        #expect(urlWins.password == "urlpw")
    }

    @Test("bad environment values name the variable", arguments: [
        ("BALDUR_REDIS_MAX_CONNECTIONS", "lots", "BALDUR_REDIS_MAX_CONNECTIONS"),
        ("BALDUR_REDIS_MAX_CONNECTIONS", "0", "maxConnections must be at least 1"),
        ("BALDUR_REDIS_HEALTH_CHECK_INTERVAL", "1", "between 5 and 300"),
        ("BALDUR_REDIS_HEALTH_CHECK_INTERVAL", "301", "between 5 and 300"),
        ("BALDUR_REDIS_SOCKET_TIMEOUT", "-1", "BALDUR_REDIS_SOCKET_TIMEOUT"),
        ("BALDUR_REDIS_RETRY_ON_TIMEOUT", "maybe", "BALDUR_REDIS_RETRY_ON_TIMEOUT"),
        ("BALDUR_REDIS_URL", "redis://h:0", "bad port '0'"),
        ("BALDUR_REDIS_SPIN_WAIT_US", "0.5", "BALDUR_REDIS_SPIN_WAIT_US"),
        ("BALDUR_REDIS_SPIN_WAIT_US", "-1", "spinWait must be between 0 and 10 ms"),
        ("BALDUR_REDIS_SPIN_WAIT_US", "20000", "spinWait must be between 0 and 10 ms"),
    ])
    func badEnvironment(name: String, value: String, expected: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration.fromEnvironment([name: value]) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }
}

/// The names the configuration had before its pool and retry settings were
/// grouped keep working for one release. (Deprecated itself, so that using
/// them here warns nobody.)
@Suite("Deprecated configuration names")
struct DeprecatedConfigurationNameTests {
    @available(*, deprecated)
    @Test("socketTimeout and the flat pool and retry names read and write the grouped settings")
    func flatNamesMapToGroups() {
        var configuration = RedisConfiguration()
        configuration.maxConnections = 7
        configuration.pipelinedConnections = 3
        configuration.healthCheckInterval = .seconds(9)
        configuration.poolTimeout = .seconds(2)
        configuration.spinWait = .microseconds(5)
        configuration.retryOnTimeout = false
        configuration.lockOutageLimit = .seconds(4)
        configuration.socketTimeout = .seconds(6)
        #expect(configuration.pool.maxConnections == 7)
        #expect(configuration.pool.pipelinedConnections == 3)
        #expect(configuration.pool.healthCheckInterval == .seconds(9))
        #expect(configuration.pool.timeout == .seconds(2))
        #expect(configuration.pool.spinWait == .microseconds(5))
        #expect(configuration.retry.onTimeout == false)
        #expect(configuration.retry.lockOutageLimit == .seconds(4))
        #expect(configuration.commandTimeout == .seconds(6))
        #expect(configuration.maxConnections == 7 && configuration.poolTimeout == .seconds(2) && !configuration.retryOnTimeout)
    }
}

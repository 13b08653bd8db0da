/// How a `rediss://` connection sets up TLS: whom to trust, whether to check
/// the server's name, and the client certificate for mutual TLS.
///
/// Verification is on by default: the server's chain must lead to the system
/// CA store (or ``caFile`` / ``caDirectory``), be in date, and name the host
/// connected to (SNI is sent for host names). Turning verification off takes
/// ``PeerVerification/insecureNoVerification``, a name meant to stand out in
/// review; use it for test servers only.
///
/// The fields are the settings redis-py (and so Python Baldur) reads from a
/// `rediss://` URL's query, with the same names:
///
/// | URL query | environment | field |
/// |---|---|---|
/// | `ssl_cert_reqs=required\|optional\|none` | `BALDUR_REDIS_SSL_CERT_REQS` | ``peerVerification`` |
/// | `ssl_ca_certs=FILE` | `BALDUR_REDIS_SSL_CA_CERTS` | ``caFile`` |
/// | `ssl_ca_path=DIR` | `BALDUR_REDIS_SSL_CA_PATH` | ``caDirectory`` |
/// | `ssl_certfile=FILE` | `BALDUR_REDIS_SSL_CERTFILE` | ``certificateFile`` |
/// | `ssl_keyfile=FILE` | `BALDUR_REDIS_SSL_KEYFILE` | ``privateKeyFile`` |
/// | `ssl_check_hostname=true\|false` | `BALDUR_REDIS_SSL_CHECK_HOSTNAME` | ``checkHostName`` |
///
/// ```swift
/// let configuration = try RedisConfiguration(
///     url: "rediss://:secret@cache.example.com:6380/0?ssl_ca_certs=/etc/baldur/ca.pem")
/// ```
///
/// Files are read when the first connection opens, once per distinct
/// configuration per process; a rotated certificate takes effect for a new
/// configuration value (or process).
public struct RedisTLSConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// Whether the server's certificate chain is checked.
    public enum PeerVerification: Sendable, Hashable, CustomStringConvertible {
        /// The chain must verify (`ssl_cert_reqs=required`). The default.
        case required
        /// `ssl_cert_reqs=optional`. A TLS server always presents a
        /// certificate, so for a client this verifies exactly as
        /// ``required`` does (as Python's `CERT_OPTIONAL` does for clients).
        case optional
        /// No check at all (`ssl_cert_reqs=none`): any server, or anyone in
        /// between, is accepted. For test servers only.
        case insecureNoVerification

        /// The `ssl_cert_reqs` spelling: `required`, `optional` or `none`.
        public var description: String {
            switch self {
            case .required: return "required"
            case .optional: return "optional"
            case .insecureNoVerification: return "none"
            }
        }

        /// Parses an `ssl_cert_reqs` value, as redis-py spells it
        /// (`required`, `optional`, `none`, also `CERT_REQUIRED`, ...).
        init?(certReqs text: String) {
            switch text.lowercased() {
            case "required", "cert_required": self = .required
            case "optional", "cert_optional": self = .optional
            case "none", "cert_none": self = .insecureNoVerification
            default: return nil
            }
        }
    }

    /// Whether the server's certificate chain is checked. Default ``PeerVerification/required``.
    public var peerVerification: PeerVerification = .required
    /// Whether the certificate must name the host connected to (DNS name or
    /// IP address in its subject alternative names). Default `true`; has no
    /// effect under ``PeerVerification/insecureNoVerification``.
    public var checkHostName: Bool = true
    /// A PEM file of CA certificates to trust instead of the system store. Default none.
    public var caFile: String?
    /// A directory of hashed CA certificates (`c_rehash`) to trust instead of the system store. Default none.
    public var caDirectory: String?
    /// The client certificate (PEM, may hold the chain) for mutual TLS. Default none.
    public var certificateFile: String?
    /// The client certificate's private key (PEM). Default: read from ``certificateFile``.
    public var privateKeyFile: String?

    /// Verifies the server against the system CA store, host name included.
    public init() {}

    /// Checks that the settings make sense together: a key needs a
    /// certificate, and paths hold no NUL (they go to OpenSSL as C strings).
    ///
    /// - Throws: ``RedisError/Code/invalidConfiguration`` naming the problem.
    public func validate() throws(RedisError) {
        for (name, path) in [("caFile", caFile), ("caDirectory", caDirectory), ("certificateFile", certificateFile), ("privateKeyFile", privateKeyFile)] {
            if let path, path.isEmpty || path.utf8.contains(0) {
                throw RedisError(.invalidConfiguration, "TLS \(name) must be a non-empty path without NUL")
            }
        }
        if privateKeyFile != nil, certificateFile == nil {
            throw RedisError(.invalidConfiguration, "TLS privateKeyFile (ssl_keyfile) needs certificateFile (ssl_certfile) too")
        }
    }

    /// The settings as URL query parameters (paths shown; they are not secret).
    public var description: String {
        var parts = ["ssl_cert_reqs=\(peerVerification)"]
        if !checkHostName { parts.append("ssl_check_hostname=false") }
        if let caFile { parts.append("ssl_ca_certs=\(caFile)") }
        if let caDirectory { parts.append("ssl_ca_path=\(caDirectory)") }
        if let certificateFile { parts.append("ssl_certfile=\(certificateFile)") }
        if let privateKeyFile { parts.append("ssl_keyfile=\(privateKeyFile)") }
        return parts.joined(separator: "&")
    }

    /// Applies one redis-py TLS setting by its query name (one of
    /// ``settingNames``); `source` names where it came from, for the error.
    mutating func apply(_ name: String, _ value: String, source: String) throws(RedisError) {
        switch name {
        case "ssl_cert_reqs":
            guard let verification = PeerVerification(certReqs: value) else {
                throw RedisError(.invalidConfiguration, "\(source) must be required, optional or none, not '\(value)'")
            }
            peerVerification = verification
        case "ssl_check_hostname":
            switch value.lowercased() {
            case "1", "true", "yes", "on": checkHostName = true
            case "0", "false", "no", "off": checkHostName = false
            default: throw RedisError(.invalidConfiguration, "\(source) must be true or false, not '\(value)'")
            }
        case "ssl_ca_certs": caFile = value
        case "ssl_ca_path": caDirectory = value
        case "ssl_certfile": certificateFile = value
        case "ssl_keyfile": privateKeyFile = value
        default: assertionFailure("\(name) is not a TLS setting")
        }
    }

    /// The query names ``apply(_:_:source:)`` takes, with their environment variables.
    static let settingNames = [
        "ssl_cert_reqs", "ssl_check_hostname", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
    ]
}

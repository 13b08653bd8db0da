/// The one error type BaldurCache throws.
///
/// A `RedisError` carries a ``Code`` that says what kind of failure happened and
/// a `message`: for a server error, the server's reply verbatim (for example
/// `WRONGTYPE Operation against a key holding the wrong kind of value`); for a
/// client-side failure, hiredis' or BaldurCache's own words.
///
/// Messages never contain cached values or passwords.
///
/// ```swift
/// do {
///     try client.send("INCR", "name-holding-a-string")
/// } catch let error as RedisError where error.code == .server {
///     print(error.prefix ?? "")   // "ERR"
/// }
/// ```
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added in later releases.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Kind: String, Sendable, Hashable {
            case connectionRefused
            case connectTimeout
            case readTimeout
            case writeTimeout
            case connectionClosed
            case io
            case protocolError
            case server
            case poolExhausted
            case invalidConfiguration
            case invalidArgument
            case unsupported
            case closed
            case decoding
            case lockNotOwned
            case lockNotAcquired
            case tls
        }

        fileprivate let kind: Kind

        /// The server refused the TCP connection or the unix socket does not exist.
        public static let connectionRefused = Code(kind: .connectionRefused)
        /// The connection was not established within `connectTimeout`.
        public static let connectTimeout = Code(kind: .connectTimeout)
        /// The server did not answer within `commandTimeout`; the connection was
        /// discarded (reset, so nothing unsent reaches the server later).
        public static let readTimeout = Code(kind: .readTimeout)
        /// The request could not be written within `commandTimeout` (the
        /// server stopped reading); the connection was discarded and reset, so
        /// the part not yet on the wire never reaches the server.
        public static let writeTimeout = Code(kind: .writeTimeout)
        /// The server closed the connection (EOF).
        public static let connectionClosed = Code(kind: .connectionClosed)
        /// Any other socket error; the message carries the system's words.
        public static let io = Code(kind: .io)
        /// The server's reply could not be parsed (including replies nested deeper than hiredis allows).
        public static let protocolError = Code(kind: .protocolError)
        /// The server answered with an error reply; see ``RedisError/prefix``.
        public static let server = Code(kind: .server)
        /// Every pooled connection stayed busy for the whole `poolTimeout`.
        public static let poolExhausted = Code(kind: .poolExhausted)
        /// A URL, environment variable or configuration value is malformed or out of range.
        public static let invalidConfiguration = Code(kind: .invalidConfiguration)
        /// An argument passed to a call is out of range or malformed.
        public static let invalidArgument = Code(kind: .invalidArgument)
        /// The feature is not available in this build (Sentinel, Cluster).
        public static let unsupported = Code(kind: .unsupported)
        /// The client, pool or connection was used after `close()`.
        public static let closed = Code(kind: .closed)
        /// A stored value could not be decoded as JSON or as the requested type.
        public static let decoding = Code(kind: .decoding)
        /// A lock was released or extended by a handle that no longer owns it.
        public static let lockNotOwned = Code(kind: .lockNotOwned)
        /// A lock could not be acquired within its blocking timeout.
        public static let lockNotAcquired = Code(kind: .lockNotAcquired)
        /// TLS failed: the server's certificate did not verify (unknown CA,
        /// host name mismatch, expired), the server refused our client
        /// certificate or demanded one, the server does not speak TLS, or a
        /// TLS record was bad. The message says which, with the address.
        /// Connection-fatal, and not transient: the same settings fail again.
        public static let tls = Code(kind: .tls)

        /// The code's name, such as `readTimeout`.
        public var description: String { kind.rawValue }
    }

    /// What kind of failure this is.
    public let code: Code
    /// The server's error reply verbatim, or a client-side explanation.
    public let message: String

    /// Creates an error with a code and a message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The first word of a server error (`NOSCRIPT`, `WRONGTYPE`, `MOVED`,
    /// `ASK`, `NOAUTH`, `WRONGPASS`, `OOM`, `BUSY`, `LOADING`, `ERR`, ...),
    /// or `nil` for client-side errors.
    public var prefix: String? {
        guard code == .server else { return nil }
        let word = message.prefix { $0 != " " }
        return word.isEmpty ? nil : String(word)
    }

    /// `true` when the failure means the connection it happened on can no
    /// longer be trusted and has been (or must be) discarded.
    public var isConnectionFatal: Bool {
        switch code.kind {
        case .connectTimeout, .connectionRefused, .readTimeout, .writeTimeout, .connectionClosed, .io, .protocolError, .tls:
            return true
        default:
            return false
        }
    }

    /// `true` when the same call may well succeed if tried again shortly:
    /// the server could not be reached or answered too late, every pooled
    /// connection was busy, or the server said it is busy or not ready
    /// (`LOADING`, `BUSY`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`). Whether
    /// a retry is *safe* is the caller's question: a write that timed out
    /// may have run.
    public var isTransient: Bool {
        switch code.kind {
        case .connectTimeout, .connectionRefused, .readTimeout, .writeTimeout, .connectionClosed, .io, .poolExhausted:
            return true
        case .server:
            switch prefix {
            case "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN": return true
            default: return false
            }
        default:
            return false
        }
    }

    /// `RedisError(code): message`.
    public var description: String { "RedisError(\(code)): \(message)" }
}

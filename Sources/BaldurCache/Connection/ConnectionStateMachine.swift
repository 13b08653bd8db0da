/// The whole life of one connection, without a socket: what it does to
/// get ready (TLS handshake, `AUTH`, `SELECT`), which requests it takes once
/// open, and what a reply, a failure, a deadline or a close request does in
/// each state.
///
/// ``RedisConnection`` drives it through the setup, on the thread that
/// connects, for both APIs; an event-loop connection
/// (``EventLoopConnection``) then takes the open machine over and drives
/// the rest under its lock. A blocking connection's open life is one
/// request at a time, so there it only records the close. The tests drive
/// it event by event in every state.
///
/// ```
///   connecting ─▶ tlsHandshake ─▶ authenticating ─▶ selecting ─▶ open
///        │             │     └──▶ verifying ──────────────────▶   │
///        │             │                 (each step only when the  │
///        │             │                  configuration asks)      │
///        └─────────────┴── failure, error reply, close ──▶ closed ◀┤
///                                                                  │
///   open ── close (nothing in flight) / failure / deadline ────────┤
///     │ close (requests in flight)                                 │
///     ▼                                                            │
///   draining ── last reply, failure or deadline ───────────────────┘
/// ```
struct ConnectionStateMachine: Sendable, Equatable {
    enum State: Sendable, Equatable {
        /// The socket is connecting.
        case connecting
        /// The TLS handshake runs (`rediss://`).
        case tlsHandshake
        /// `AUTH` was sent; its reply is due.
        case authenticating
        /// `SELECT` was sent; its reply is due.
        case selecting
        /// A `PING` was sent to learn whether a TLS 1.3 server that asked
        /// for a client certificate (and got none) keeps the connection:
        /// such a server says so only in its first record after the handshake.
        case verifying
        /// Takes requests.
        case open
        /// Closing gracefully: no new requests; closes after the last reply.
        case draining
        /// Closed for good, with the error later requests get.
        case closed(RedisError)
    }

    /// What the configuration asks of a new connection before it is open.
    /// No credentials: the driver builds `AUTH` from its configuration.
    struct Setup: Sendable, Equatable {
        /// `rediss://`: a TLS handshake first.
        let tls: Bool
        /// A password is configured: `AUTH` (with the user name, if any).
        let authenticates: Bool
        /// The database to `SELECT`; 0 sends nothing.
        let database: Int

        init(tls: Bool = false, authenticates: Bool = false, database: Int = 0) {
            self.tls = tls
            self.authenticates = authenticates
            self.database = database
        }

        init(_ configuration: RedisConfiguration) {
            self.init(tls: configuration.tls != nil, authenticates: configuration.password != nil, database: configuration.database)
        }
    }

    private(set) var state: State
    /// Replies still due for the requests sent or queued.
    private(set) var inFlight = 0
    /// Delivers replies that arrive with nothing in flight (a subscription).
    /// Set when an event-loop connection takes the machine over.
    var pushMode: Bool
    private let setup: Setup
    /// The server asked for a client certificate in the handshake and got none.
    private var clientCertificateDemanded = false

    /// A connection about to connect, with `setup` still to do.
    init(connecting setup: Setup) {
        self.state = .connecting
        self.setup = setup
        self.pushMode = false
    }

    /// A connection that is open already (its setup done elsewhere).
    init(pushMode: Bool = false) {
        self.state = .open
        self.setup = Setup()
        self.pushMode = pushMode
    }

    // MARK: Setup

    /// What the connection does next on its way to open.
    enum SetupAction: Sendable, Equatable {
        /// Run the TLS handshake, then report ``tlsEstablished(clientCertificateDemanded:)``.
        case handshakeTLS
        /// Send `AUTH` with the configured credentials, then report its reply.
        case authenticate
        /// Send `SELECT` with this index, then report its reply.
        case select(Int)
        /// Send `PING`, then report its reply.
        case verify
        /// The connection is open.
        case ready
        /// The setup failed: close the socket and throw this.
        case fail(RedisError)
    }

    /// The socket connected.
    mutating func connected() -> SetupAction {
        guard case .connecting = state else { return outOfOrder("connected") }
        if setup.tls {
            state = .tlsHandshake
            return .handshakeTLS
        }
        return afterTransport()
    }

    /// The TLS handshake completed; `clientCertificateDemanded` when the
    /// server asked for a client certificate and none is configured.
    mutating func tlsEstablished(clientCertificateDemanded: Bool) -> SetupAction {
        guard case .tlsHandshake = state else { return outOfOrder("the TLS handshake completed") }
        self.clientCertificateDemanded = clientCertificateDemanded
        return afterTransport()
    }

    /// The reply to the setup command just sent. An error reply (a wrong
    /// password, a database out of range, `NOAUTH`) fails the connection
    /// with the server's message.
    mutating func setupReplyReceived(_ reply: RedisReply) -> SetupAction {
        let step = state
        switch step {
        case .authenticating, .selecting, .verifying:
            if case .error(let message) = reply {
                return fail(RedisError(.server, message))
            }
        default:
            return outOfOrder("a setup reply arrived")
        }
        if case .authenticating = step, setup.database != 0 {
            state = .selecting
            return .select(setup.database)
        }
        state = .open
        return .ready
    }

    /// The setup failed with `error` (I/O, timeout, EOF): the connection is
    /// closed, and the returned error is the one to report. A server that
    /// asked for a client certificate and closed the connection after the
    /// handshake is reported as a TLS error saying so: the alert that said
    /// why may be lost to the reset that follows it.
    mutating func setupFailed(_ error: RedisError, at address: RedisServerAddress) -> RedisError {
        if case .closed(let earlier) = state { return earlier }
        let reported: RedisError
        if clientCertificateDemanded, error.code == .connectionClosed || error.code == .io {
            reported = RedisError(.tls, "\(address) asked for a client certificate and closed the connection without one: it demanded a client certificate; set ssl_certfile and ssl_keyfile (\(error.message))")
        } else {
            reported = error
        }
        state = .closed(reported)
        inFlight = 0
        return reported
    }

    /// After the socket (and TLS) is up: `AUTH`, `SELECT`, a `PING` where
    /// only a reply tells whether the server keeps the connection, or open.
    private mutating func afterTransport() -> SetupAction {
        if setup.authenticates {
            state = .authenticating
            return .authenticate
        }
        if setup.database != 0 {
            state = .selecting
            return .select(setup.database)
        }
        if clientCertificateDemanded {
            state = .verifying
            return .verify
        }
        state = .open
        return .ready
    }

    private mutating func fail(_ error: RedisError) -> SetupAction {
        state = .closed(error)
        inFlight = 0
        return .fail(error)
    }

    /// An event the setup does not expect in this state: a bug in the
    /// driver, reported as one rather than trapping.
    private mutating func outOfOrder(_ event: String) -> SetupAction {
        if case .closed(let error) = state { return .fail(error) }
        return fail(RedisError(.protocolError, "\(event) while the connection was \(state)"))
    }

    // MARK: Open

    enum SubmitAction: Equatable {
        case send
        case refuse(RedisError)
    }

    /// A caller wants to send a request that `replies` replies answer (a pipeline's commands).
    mutating func submit(replies: Int = 1) -> SubmitAction {
        switch state {
        case .open:
            inFlight += replies
            return .send
        case .draining:
            return .refuse(RedisError(.closed, "the connection is closing"))
        case .closed(let error):
            return .refuse(error)
        case .connecting, .tlsHandshake, .authenticating, .selecting, .verifying:
            return .refuse(RedisError(.closed, "the connection is not open yet"))
        }
    }

    enum ReplyAction: Equatable {
        /// Hand the reply to the oldest request.
        case deliver
        /// Hand it over, then close: the last reply of a draining connection.
        case deliverAndClose
        /// Hand it to the subscription.
        case push
        /// A reply nobody asked for: the stream is out of step; close with this error.
        case fail(RedisError)
        /// Closed already: drop it.
        case drop
    }

    /// A complete reply arrived.
    mutating func replyReceived() -> ReplyAction {
        switch state {
        case .closed:
            return .drop
        case .connecting, .tlsHandshake, .authenticating, .selecting, .verifying:
            // Setup replies go to setupReplyReceived; anything else is out of step.
            let error = RedisError(.protocolError, "the server sent a reply before the connection was open")
            state = .closed(error)
            return .fail(error)
        case .open, .draining:
            if inFlight == 0 {
                if pushMode { return .push }
                let error = RedisError(.protocolError, "the server sent a reply no request was waiting for")
                state = .closed(error)
                return .fail(error)
            }
            inFlight -= 1
            if case .draining = state, inFlight == 0 {
                state = .closed(RedisError(.closed, "the connection was closed"))
                return .deliverAndClose
            }
            return .deliver
        }
    }

    enum FailAction: Equatable {
        /// Fail every request in flight with the error and close.
        case failAll
        /// Already closed: nothing to do.
        case ignore
    }

    /// The socket failed, or a request's deadline passed (the connection
    /// cannot skip a reply in a stream, so it fails as a whole).
    mutating func failed(_ error: RedisError) -> FailAction {
        if case .closed = state { return .ignore }
        state = .closed(error)
        inFlight = 0
        return .failAll
    }

    enum CloseAction: Equatable {
        case closeNow
        case waitForReplies
        case ignore
    }

    /// The owner closes the connection: at once, or (`graceful`) after the
    /// replies in flight arrived.
    mutating func closeRequested(graceful: Bool) -> CloseAction {
        switch state {
        case .closed:
            return .ignore
        case .open where graceful && inFlight > 0:
            state = .draining
            return .waitForReplies
        case .draining where graceful:
            return .waitForReplies
        case .open, .draining, .connecting, .tlsHandshake, .authenticating, .selecting, .verifying:
            state = .closed(RedisError(.closed, "the connection was closed"))
            inFlight = 0
            return .closeNow
        }
    }

    var isOpen: Bool { state == .open }
}

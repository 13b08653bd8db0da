/// The life of one event-loop connection, without a socket: which requests
/// it takes, what a reply, a failure, a deadline or a close request does in
/// each state. ``EventLoopConnection`` owns one under its lock and carries
/// out the actions it returns; the tests drive it event by event.
///
/// ```
///            close (nothing in flight) / failure / deadline
///   open ─────────────────────────────────────────────────────▶ closed
///     │ close (requests in flight)                                 ▲
///     ▼                                                            │
///   draining ── last reply, failure or deadline ───────────────────┘
/// ```
struct ConnectionStateMachine: Sendable, Equatable {
    enum State: Sendable, Equatable {
        /// Takes requests.
        case open
        /// Closing gracefully: no new requests; closes after the last reply.
        case draining
        /// Closed for good, with the error later requests get.
        case closed(RedisError)
    }

    private(set) var state: State = .open
    /// Replies still due for the requests sent or queued.
    private(set) var inFlight = 0
    /// Delivers replies that arrive with nothing in flight (a subscription).
    let pushMode: Bool

    init(pushMode: Bool = false) {
        self.pushMode = pushMode
    }

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
        case .open, .draining:
            state = .closed(RedisError(.closed, "the connection was closed"))
            inFlight = 0
            return .closeNow
        }
    }

    var isOpen: Bool { state == .open }
}

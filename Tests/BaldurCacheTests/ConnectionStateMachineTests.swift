@testable import BaldurCache
import Testing

/// A connection's whole life, event by event, without a socket: the setup
/// (connect, TLS, AUTH, SELECT) that both APIs run, then the event-loop
/// connection's open life.
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    private let closed = RedisError(.connectionClosed, "gone")
    private let address = RedisServerAddress.tcp(host: "127.0.0.1", port: 6379)
    private let everything = ConnectionStateMachine.Setup(tls: true, authenticates: true, database: 3)

    /// A machine driven to `state` through the setup of ``everything``.
    private func machine(in state: ConnectionStateMachine.State, demanded: Bool = false) -> ConnectionStateMachine {
        var machine = ConnectionStateMachine(connecting: demanded ? .init(tls: true) : everything)
        if state == .connecting { return machine }
        _ = machine.connected()
        if state == .tlsHandshake { return machine }
        _ = machine.tlsEstablished(clientCertificateDemanded: demanded)
        if state == .authenticating || state == .verifying { return machine }
        _ = machine.setupReplyReceived(.status("OK"))
        return machine
    }

    private static let setupStates: [ConnectionStateMachine.State] = [.connecting, .tlsHandshake, .authenticating, .selecting, .verifying]

    @Test("a plain connection with no password and database 0 is open as soon as it connects")
    func plainSetup() {
        var machine = ConnectionStateMachine(connecting: .init())
        #expect(machine.state == .connecting)
        #expect(machine.connected() == .ready)
        #expect(machine.state == .open)
        #expect(machine.submit() == .send)
    }

    @Test("the setup runs the TLS handshake, AUTH and SELECT in that order, each only when configured")
    func setupInOrder() {
        var full = ConnectionStateMachine(connecting: everything)
        #expect(full.connected() == .handshakeTLS)
        #expect(full.state == .tlsHandshake)
        #expect(full.tlsEstablished(clientCertificateDemanded: false) == .authenticate)
        #expect(full.state == .authenticating)
        #expect(full.setupReplyReceived(.status("OK")) == .select(3))
        #expect(full.state == .selecting)
        #expect(full.setupReplyReceived(.status("OK")) == .ready)
        #expect(full.state == .open)

        var authOnly = ConnectionStateMachine(connecting: .init(authenticates: true))
        #expect(authOnly.connected() == .authenticate)
        #expect(authOnly.setupReplyReceived(.status("OK")) == .ready)

        var selectOnly = ConnectionStateMachine(connecting: .init(database: 15))
        #expect(selectOnly.connected() == .select(15))
        #expect(selectOnly.setupReplyReceived(.status("OK")) == .ready)

        var tlsOnly = ConnectionStateMachine(connecting: .init(tls: true))
        #expect(tlsOnly.connected() == .handshakeTLS)
        #expect(tlsOnly.tlsEstablished(clientCertificateDemanded: false) == .ready)
    }

    @Test("an error reply to AUTH, SELECT or the verifying PING fails the setup with the server's message")
    func setupErrorReplies() {
        for state in [ConnectionStateMachine.State.authenticating, .selecting] {
            var machine = machine(in: state)
            let refusal = RedisReply.error("WRONGPASS invalid username-password pair or user is disabled.")
            guard case .fail(let error) = machine.setupReplyReceived(refusal) else {
                Issue.record("an error reply in \(state) did not fail the setup")
                continue
            }
            #expect(error.code == .server)
            #expect(error.message.hasPrefix("WRONGPASS"))
            #expect(machine.state == .closed(error))
            if case .refuse(let refused) = machine.submit() { #expect(refused == error) } else { Issue.record("a failed setup took a request") }
        }
        var verifying = machine(in: .verifying, demanded: true)
        #expect(verifying.state == .verifying)
        #expect(verifying.setupReplyReceived(.error("NOAUTH Authentication required.")) == .fail(RedisError(.server, "NOAUTH Authentication required.")))
    }

    @Test("a TLS server that asked for a client certificate gets a PING, and closing instead is reported as the missing certificate")
    func missingClientCertificate() {
        var dropped = ConnectionStateMachine(connecting: .init(tls: true))
        _ = dropped.connected()
        #expect(dropped.tlsEstablished(clientCertificateDemanded: true) == .verify)
        #expect(dropped.state == .verifying)
        let reported = dropped.setupFailed(RedisError(.connectionClosed, "the server closed the connection"), at: address)
        #expect(reported.code == .tls)
        #expect(reported.message.contains("demanded a client certificate"))
        #expect(reported.message.contains("the server closed the connection"))
        #expect(dropped.state == .closed(reported))

        // Kept: the PING's reply opens the connection.
        var kept = machine(in: .verifying, demanded: true)
        #expect(kept.setupReplyReceived(.status("PONG")) == .ready)

        // A timeout is a timeout, whatever the handshake said.
        var slow = machine(in: .verifying, demanded: true)
        #expect(slow.setupFailed(RedisError(.readTimeout, "no reply"), at: address).code == .readTimeout)

        // With a password, AUTH's reply answers the question: no PING.
        var authenticated = ConnectionStateMachine(connecting: .init(tls: true, authenticates: true))
        _ = authenticated.connected()
        #expect(authenticated.tlsEstablished(clientCertificateDemanded: true) == .authenticate)
        #expect(authenticated.setupReplyReceived(.status("OK")) == .ready)
    }

    @Test("in every setup state a failure closes with that error once, a request is refused, and a stray reply is a protocol error")
    func everySetupState() {
        for state in Self.setupStates {
            var failing = machine(in: state, demanded: state == .verifying)
            #expect(failing.state == state)
            let error = RedisError(.readTimeout, "no reply within 1 s")
            #expect(failing.setupFailed(error, at: address) == error)
            #expect(failing.state == .closed(error))
            #expect(failing.setupFailed(RedisError(.io, "later"), at: address) == error, "a second failure in \(state) replaced the first")
            #expect(failing.failed(closed) == .ignore)

            var requested = machine(in: state, demanded: state == .verifying)
            guard case .refuse(let refusal) = requested.submit() else {
                Issue.record("a connection in \(state) took a request")
                continue
            }
            #expect(refusal.code == .closed)
            #expect(requested.inFlight == 0)

            var stray = machine(in: state, demanded: state == .verifying)
            guard case .fail(let protocolError) = stray.replyReceived() else {
                Issue.record("a reply in \(state) was delivered")
                continue
            }
            #expect(protocolError.code == .protocolError)
            #expect(stray.state == .closed(protocolError))

            var closing = machine(in: state, demanded: state == .verifying)
            #expect(closing.closeRequested(graceful: true) == .closeNow)
            #expect(closing.setupReplyReceived(.status("OK")) == .fail(RedisError(.closed, "the connection was closed")))
        }
    }

    @Test("setup events out of order fail the connection with a protocol error instead of trapping")
    func setupOutOfOrder() {
        var twice = ConnectionStateMachine(connecting: .init())
        _ = twice.connected()
        guard case .fail(let error) = twice.connected() else {
            Issue.record("an open connection connected again")
            return
        }
        #expect(error.code == .protocolError)
        #expect(twice.state == .closed(error))

        var early = ConnectionStateMachine(connecting: everything)
        guard case .fail = early.tlsEstablished(clientCertificateDemanded: false) else {
            Issue.record("a handshake completed before the socket connected")
            return
        }
        var unasked = ConnectionStateMachine(connecting: everything)
        _ = unasked.connected()
        guard case .fail = unasked.setupReplyReceived(.status("OK")) else {
            Issue.record("a setup reply was taken during the TLS handshake")
            return
        }
        var open = ConnectionStateMachine()
        guard case .fail = open.setupReplyReceived(.status("OK")) else {
            Issue.record("an open connection took a setup reply")
            return
        }
        #expect(open.closeRequested(graceful: false) == .ignore)
    }

    @Test("an open connection takes requests and hands each reply to the oldest, counting pipeline replies")
    func openDeliversInOrder() {
        var machine = ConnectionStateMachine()
        #expect(machine.submit() == .send)
        #expect(machine.submit(replies: 3) == .send)
        #expect(machine.inFlight == 4)
        for _ in 0..<4 { #expect(machine.replyReceived() == .deliver) }
        #expect(machine.inFlight == 0)
        #expect(machine.state == .open)
    }

    @Test("a reply nobody waits for closes the connection with a protocol error; a subscription takes it as a push")
    func unexpectedReply() {
        var machine = ConnectionStateMachine()
        guard case .fail(let error) = machine.replyReceived() else {
            Issue.record("an unexpected reply was accepted")
            return
        }
        #expect(error.code == .protocolError)
        #expect(machine.state == .closed(error))
        if case .refuse(let refused) = machine.submit() { #expect(refused == error) } else { Issue.record("a closed connection took a request") }

        var subscription = ConnectionStateMachine(pushMode: true)
        #expect(subscription.replyReceived() == .push)
        #expect(subscription.state == .open)
    }

    @Test("a graceful close waits for the replies in flight, refuses new requests, and closes after the last reply")
    func gracefulCloseDrains() {
        var machine = ConnectionStateMachine()
        _ = machine.submit(replies: 2)
        #expect(machine.closeRequested(graceful: true) == .waitForReplies)
        #expect(machine.state == .draining)
        guard case .refuse(let error) = machine.submit() else {
            Issue.record("a draining connection took a request")
            return
        }
        #expect(error.code == .closed)
        #expect(machine.closeRequested(graceful: true) == .waitForReplies)
        #expect(machine.replyReceived() == .deliver)
        #expect(machine.replyReceived() == .deliverAndClose)
        #expect(machine.closeRequested(graceful: true) == .ignore)
        #expect(machine.replyReceived() == .drop)
    }

    @Test("a graceful close of an idle connection, or any forced close, closes at once")
    func immediateClose() {
        var idle = ConnectionStateMachine()
        #expect(idle.closeRequested(graceful: true) == .closeNow)
        var busy = ConnectionStateMachine()
        _ = busy.submit()
        #expect(busy.closeRequested(graceful: false) == .closeNow)
        #expect(busy.inFlight == 0)
        var draining = ConnectionStateMachine()
        _ = draining.submit()
        _ = draining.closeRequested(graceful: true)
        #expect(draining.closeRequested(graceful: false) == .closeNow)
    }

    @Test("a failure fails everything in flight once, in every state, and later events are ignored or dropped")
    func failureInEveryState() {
        var open = ConnectionStateMachine()
        _ = open.submit(replies: 5)
        #expect(open.failed(closed) == .failAll)
        #expect(open.inFlight == 0)
        #expect(open.state == .closed(closed))
        #expect(open.failed(closed) == .ignore)
        #expect(open.replyReceived() == .drop)
        #expect(open.closeRequested(graceful: true) == .ignore)
        if case .refuse(let error) = open.submit() { #expect(error == closed) } else { Issue.record("a failed connection took a request") }

        var draining = ConnectionStateMachine()
        _ = draining.submit()
        _ = draining.closeRequested(graceful: true)
        #expect(draining.failed(closed) == .failAll)
        #expect(draining.state == .closed(closed))
    }
}

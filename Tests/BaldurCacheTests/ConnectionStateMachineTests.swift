@testable import BaldurCache
import Testing

/// The event-loop connection's life cycle, event by event, without a socket.
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    private let closed = RedisError(.connectionClosed, "gone")

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

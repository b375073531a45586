import Foundation
@testable import OverseerPostgres
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Fails the run when a server is required (CI, OVERSEER_REQUIRE_POSTGRES) but not given; the other
/// tests are skipped then, with the reason.
@Test func aServerIsGivenWhenOneIsRequired() {
    if testPostgresURL == nil && postgresRequired {
        Issue.record("CI or OVERSEER_REQUIRE_POSTGRES is set, but \(noPostgres)")
    }
}

/// The libpq layer against a real server (OVERSEER_TEST_POSTGRES). Each test works in a schema of its own.
@Suite(.enabled(if: testPostgresURL != nil, Comment(rawValue: noPostgres)))
struct LibPQServerTests {
    @Test func connectsWithUTF8AndTheDefaults() throws {
        let conn = try connectToTestServer()
        #expect(conn.isOK)
        #expect(conn.serverVersion >= 100000)
        #expect(conn.socket >= 0)
        #expect(conn.backendPID > 0)
        let password = try passwordOfTestServer()
        #expect(conn.target.contains(":***@"))
        #expect(!conn.target.contains(password))
        let r = try conn.exec("SHOW client_encoding; ")
        #expect(r.string(0, 0) == "UTF8")
        #expect(try conn.exec("SHOW synchronous_commit").string(0, 0) == "on")
        #expect(try conn.exec("SHOW application_name").string(0, 0) == "overseer")
        #expect(try conn.exec("SELECT current_user, current_database()").string(0, 1) == "overseer")

        #expect(conn.transactionStatus == .idle)
        try conn.exec("BEGIN")
        #expect(conn.transactionStatus == .inTransaction)
        _ = pgError { () throws(PGError) in try conn.exec("SELECT 1/0") }
        #expect(conn.transactionStatus == .inFailedTransaction)
        try conn.exec("ROLLBACK")
        #expect(conn.transactionStatus == .idle)
        #expect(conn.isOK)
    }

    @Test func simpleQueriesGiveTextResults() throws {
        let conn = try connectToTestServer()
        try withSchema(conn) { s in
            try conn.exec("""
                CREATE TABLE \(s).t (id int8 PRIMARY KEY, name text, flag bool, note text);
                INSERT INTO \(s).t VALUES (1, 'one', true, NULL), (2, 'two', false, 'x'), (-9223372036854775808, 'min', NULL, '');
                """)
            let insert = try conn.exec("INSERT INTO \(s).t (id, name) VALUES (10, 'ten'), (11, 'eleven')")
            #expect(insert.commandTuples == 2)
            #expect(insert.commandStatus == "INSERT 0 2")
            #expect(insert.rowCount == 0)
            let r = try conn.exec("SELECT id, name, flag, note FROM \(s).t ORDER BY id")
            #expect(r.rowCount == 5)
            #expect(r.columnCount == 4)
            #expect(r.commandTuples == 5)
            #expect(r.columnName(1) == "name")
            #expect(r.columnIndex("note") == 3)
            #expect(r.columnIndex("NOTE") == nil)
            #expect(r.columnType(0) == 20)
            #expect(!r.isBinary(0))
            #expect(r.int64(0, 0) == Int64.min)
            #expect(r.string(0, 1) == "min")
            #expect(r.isNull(0, 2))
            #expect(r.bool(0, 2) == nil)
            #expect(r.string(0, 3) == "")
            #expect(!r.isNull(0, 3))
            #expect(r.int64(1, 0) == 1)
            #expect(r.bool(1, 2) == true)
            #expect(r.bool(2, 2) == false)
            #expect(r.isNull(1, 3))
            #expect(r.bytes(1, 3) == nil)
            #expect(r.bytes(2, 3) == Array("x".utf8))
            #expect(r.int64(1, 1) == nil)  // "one" is not a number
            #expect(try conn.exec("").rowCount == 0)  // an empty query is fine
            let last = try conn.exec("SELECT 1; SELECT 2 AS two, 3")
            #expect(last.int64(0, 0) == 2)
            #expect(last.columnName(0) == "two")
        }
    }

    @Test func parametersOfEveryKindAndBinaryResults() throws {
        let conn = try connectToTestServer()
        try withSchema(conn) { s in
            try conn.exec("CREATE TABLE \(s).v (k int4 PRIMARY KEY, i8 int8, i4 int4, b bytea, t text)")
            var big = [UInt8](repeating: 0, count: 1 << 20)
            for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
            big[0] = 0
            big[big.count - 1] = 0
            let text = "héllo wörld — 日本語 🎉 e\u{301} \"quoted\" 'single' \\ back"
            let rows: [[PGParam]] = [
                [.int32(1), .int64(Int64.max), .int32(Int32.max), .bytes([0, 1, 0, 255, 0]), .text(text)],
                [.int32(2), .int64(Int64.min), .int32(Int32.min), .bytes(big), .text("")],
                [.int32(3), .int64(0), .int32(-1), .bytes([]), .null],
                [.int32(4), .null, .null, .null, .text("42")],
            ]
            for row in rows {
                let r = try conn.exec("INSERT INTO \(s).v VALUES ($1, $2, $3, $4, $5)", row)
                #expect(r.commandTuples == 1)
            }
            let r = try conn.exec("SELECT k, i8, i4, b, t FROM \(s).v WHERE k >= $1 ORDER BY k", [.int64(1)])
            #expect(r.rowCount == 4)
            #expect(r.isBinary(1))
            #expect(r.int64(0, 1) == Int64.max)
            #expect(r.int64(0, 2) == Int64(Int32.max))
            #expect(r.bytes(0, 3) == [0, 1, 0, 255, 0])
            #expect(r.string(0, 4) == text)
            #expect(r.int64(1, 1) == Int64.min)
            #expect(r.int64(1, 2) == Int64(Int32.min))
            #expect(r.withBytes(1, 3) { $0.count } == big.count)
            #expect(r.withBytes(1, 3) { $0.elementsEqual(big) } == true)
            #expect(r.bytes(1, 3) == big)
            #expect(r.string(1, 4) == "")
            #expect(r.int64(2, 1) == 0)
            #expect(r.int64(2, 2) == -1)
            #expect(r.bytes(2, 3) == [])
            #expect(r.withBytes(2, 3) { $0.count } == 0)
            #expect(r.isNull(2, 4))
            #expect(r.string(2, 4) == nil)
            for c in 1...3 { #expect(r.isNull(3, c)) }
            #expect(r.int64(3, 1) == nil)
            #expect(r.withBytes(3, 3) { _ in true } == nil)
            #expect(r.string(3, 4) == "42")

            // The server reads the parameters as the types they were sent as.
            let typed = try conn.exec(
                "SELECT $1::int8 + 1, $2::int4 - 1, length($3), $4::text, $5::text IS NULL, octet_length($6::text)",
                [.int64(41), .int32(-41), .bytes(big), .text("t"), .null, .text(text)])
            #expect(typed.int64(0, 0) == 42)
            #expect(typed.int64(0, 1) == -42)
            #expect(typed.int64(0, 2) == Int64(big.count))
            #expect(typed.string(0, 3) == "t")
            #expect(typed.bool(0, 4) == true)
            #expect(typed.int64(0, 5) == Int64(text.utf8.count))

            let nul = pgError { () throws(PGError) in _ = try conn.exec("SELECT $1::text", [.text("a\u{0}b")]) }
            #expect(nul?.kind == .protocolError)
            #expect(conn.isOK)
        }
    }

    @Test func int64DecodesSmallIntsOidsAndIntegralNumerics() throws {
        let conn = try connectToTestServer()
        let r = try conn.exec("""
            SELECT 7::int2, (-8)::int4, 26::oid, 12345678901234::numeric, (-9223372036854775808)::numeric,
                   9223372036854775807::numeric, 10000::numeric, 0::numeric, 1.5::numeric, 2.000::numeric,
                   1e20::numeric, 'NaN'::numeric, sum(x), 'x'::text, true, false
            FROM (VALUES (9223372036854775807::int8), (-1::int8)) AS v(x)
            """, [])
        let expected: [Int64?] = [7, -8, 26, 12_345_678_901_234, Int64.min, Int64.max, 10000, 0, nil, 2, nil, nil, Int64.max - 1, nil]
        for (c, e) in expected.enumerated() { #expect(r.int64(0, c) == e, "column \(c)") }
        #expect(r.columnType(12) == 1700)
        #expect(r.bool(0, 14) == true)
        #expect(r.bool(0, 15) == false)
        #expect(r.bool(0, 0) == nil)
    }

    @Test func aUniqueViolationIsItsOwnKind() throws {
        let conn = try connectToTestServer()
        try withSchema(conn) { s in
            try conn.exec("CREATE TABLE \(s).u (id int8 CONSTRAINT u_id PRIMARY KEY)")
            try conn.exec("INSERT INTO \(s).u VALUES ($1)", [.int64(1)])
            let e = try #require(pgError { () throws(PGError) in try conn.exec("INSERT INTO \(s).u VALUES ($1)", [.int64(1)]) })
            #expect(e.kind == .uniqueViolation)
            #expect(e.sqlState == "23505")
            #expect(e.constraint == "u_id")
            #expect(e.detail == "Key (id)=(1) already exists.")
            #expect(e.message.contains("duplicate key value violates unique constraint \"u_id\""))
            #expect(e.description.hasSuffix("(SQLSTATE 23505)"))
            #expect(!e.connectionLost)
            #expect(conn.isOK)

            let syntax = try #require(pgError { () throws(PGError) in try conn.exec("SELEC 1") })
            #expect(syntax.kind == .query)
            #expect(syntax.sqlState == "42601")
            #expect(!syntax.connectionLost)
            let missing = try #require(pgError { () throws(PGError) in try conn.exec("SELECT * FROM \(s).nope", []) })
            #expect(missing.kind == .query)
            #expect(missing.sqlState == "42P01")
            #expect(try conn.exec("SELECT 1").int64(0, 0) == 1)
        }
    }

    @Test func severalStatementsInOneStringSayWhichOneFailed() throws {
        let conn = try connectToTestServer()
        try withSchema(conn) { s in
            try conn.exec("CREATE TABLE \(s).m (id int8 CONSTRAINT m_id PRIMARY KEY)")
            let ok = try conn.exec(statements: ["BEGIN", "INSERT INTO \(s).m VALUES (1)", "SELECT count(*) FROM \(s).m"])
            #expect(ok.count == 3)
            #expect(ok[0].commandStatus == "BEGIN")
            #expect(ok[1].commandTuples == 1)
            #expect(ok[2].int64(0, 0) == 1)
            #expect(conn.transactionStatus == .inTransaction)
            // The second statement fails: the first ran, COMMIT after it did not.
            let e = try #require(pgError { () throws(PGError) in
                try conn.exec(statements: ["INSERT INTO \(s).m VALUES (2)", "INSERT INTO \(s).m VALUES (1)", "COMMIT"])
            })
            #expect(e.statement == 1)
            #expect(e.kind == .uniqueViolation)
            #expect(e.table == "m" && e.constraint == "m_id")
            #expect(!e.connectionLost)
            #expect(conn.transactionStatus == .inFailedTransaction)
            try conn.exec("ROLLBACK")
            #expect(try conn.exec("SELECT count(*) FROM \(s).m").int64(0, 0) == 0)
            // A syntax error in any statement means none runs (the string is parsed first).
            let syntax = try #require(pgError { () throws(PGError) in
                try conn.exec(statements: ["INSERT INTO \(s).m VALUES (3)", "SELEC 1"])
            })
            #expect(syntax.statement == 0 && syntax.sqlState == "42601")
            #expect(try conn.exec("SELECT count(*) FROM \(s).m").int64(0, 0) == 0)
            // Text-format bytea decodes in both output formats.
            let hex = try conn.exec(statements: ["SELECT decode('00ff5c27', 'hex')", "SET bytea_output = escape", "SELECT decode('00ff5c27', 'hex')", "RESET bytea_output"])
            #expect(hex[0].bytea(0, 0) == [0x00, 0xFF, 0x5C, 0x27])
            #expect(hex[2].bytea(0, 0) == [0x00, 0xFF, 0x5C, 0x27])
            #expect(try conn.exec("SELECT decode('0102', 'hex')", []).bytea(0, 0) == [1, 2])
        }
        // A statement that ends the session: the statements before it ran, the connection is lost.
        let lost = try #require(pgError { () throws(PGError) in
            try conn.exec(statements: ["SELECT 1", "SELECT pg_terminate_backend(pg_backend_pid())", "SELECT 3"])
        })
        #expect(lost.statement == 1)
        #expect(lost.connectionLost, "\(lost)")
        try conn.reset()
        #expect(try conn.exec(statements: ["SELECT 1", "SELECT 2"]).map { $0.int64(0, 0) } == [1, 2])
    }

    @Test func serializationFailuresAndDeadlocksAreTheirOwnKinds() throws {
        let a = try connectToTestServer(), b = try connectToTestServer(), watcher = try connectToTestServer()
        try withSchema(a) { s in
            try a.exec("CREATE TABLE \(s).r (id int4 PRIMARY KEY, v int8); INSERT INTO \(s).r VALUES (1, 0), (2, 0)")

            try a.exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
            try a.exec("SELECT v FROM \(s).r WHERE id = 1")
            try b.exec("UPDATE \(s).r SET v = v + 1 WHERE id = 1")
            let ser = try #require(pgError { () throws(PGError) in try a.exec("UPDATE \(s).r SET v = 5 WHERE id = 1") })
            #expect(ser.kind == .serialization)
            #expect(ser.sqlState == "40001")
            try a.exec("ROLLBACK")

            try a.exec("BEGIN; UPDATE \(s).r SET v = 10 WHERE id = 1")
            try b.exec("BEGIN; UPDATE \(s).r SET v = 20 WHERE id = 2")
            let aPID = a.backendPID
            let first = Background { () -> PGError? in
                do throws(PGError) {
                    try a.exec("UPDATE \(s).r SET v = 11 WHERE id = 2")
                    return nil
                } catch { return error }
            }
            try waitUntil(watcher, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", [.int32(aPID)])
            var second: PGError?
            do throws(PGError) { try b.exec("UPDATE \(s).r SET v = 21 WHERE id = 1") } catch { second = error }
            let errors = [first.wait(), second].compactMap { $0 }
            #expect(errors.count == 1)
            #expect(errors.first?.kind == .deadlock)
            #expect(errors.first?.sqlState == "40P01")
            try a.exec("ROLLBACK")
            try b.exec("ROLLBACK")
        }
    }

    @Test func statementTimeoutsAndCancelRequests() throws {
        let conn = try connectToTestServer(), watcher = try connectToTestServer()
        try conn.exec("SET statement_timeout = 100")
        let timeout = try #require(pgError { () throws(PGError) in try conn.exec("SELECT pg_sleep(10)") })
        #expect(timeout.kind == .queryCanceled)
        #expect(timeout.sqlState == "57014")
        #expect(!timeout.connectionLost)
        try conn.exec("SET statement_timeout = 0")

        let token = try #require(conn.makeCancelToken())
        let pid = conn.backendPID
        let started = ContinuousClock.now
        let sleeper = Background { () -> PGError? in
            do throws(PGError) {
                try conn.exec("SELECT pg_sleep(30)", [])
                return nil
            } catch { return error }
        }
        try waitUntil(watcher, "SELECT state = 'active' AND query LIKE '%pg_sleep(30)%' FROM pg_stat_activity WHERE pid = $1", [.int32(pid)])
        try token.cancel()
        let canceled = sleeper.wait()
        #expect(canceled?.kind == .queryCanceled)
        #expect(ContinuousClock.now - started < .seconds(20))
        #expect(try conn.exec("SELECT 1").int64(0, 0) == 1)
        try token.cancel()  // nothing runs: harmless
    }

    @Test func notificationsArriveAfterPollOnTheSocket() throws {
        let listener = try connectToTestServer(), sender = try connectToTestServer()
        let channel = "Overseer_" + UUID().uuidString.prefix(8)
        try listener.exec("LISTEN \(pgQuoteIdentifier(channel))")
        #expect(try listener.notifications().isEmpty)
        #expect(try listener.waitForNotifications(timeout: .milliseconds(50)).isEmpty)

        try sender.exec("SELECT pg_notify($1, $2)", [.text(channel), .text("payload ✓ 1")])
        try sender.exec("NOTIFY \(pgQuoteIdentifier(channel))")
        var got: [PGNotification] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while got.count < 2 && ContinuousClock.now < deadline {
            var fd = pollfd(fd: listener.socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&fd, 1, 1000)
            #expect(ready >= 0)
            got += try listener.notifications()
        }
        #expect(got == [
            PGNotification(channel: channel, payload: "payload ✓ 1", pid: sender.backendPID),
            PGNotification(channel: channel, payload: "", pid: sender.backendPID),
        ])

        // One that arrives while the listener runs a statement waits in libpq for the next call.
        try sender.exec("SELECT pg_notify($1, 'during')", [.text(channel)])
        try listener.exec("SELECT pg_sleep(0.2)")
        let later = try listener.waitForNotifications(timeout: .seconds(10))
        #expect(later.map(\.payload) == ["during"])
    }

    @Test func aWrongPasswordFailsWithoutShowingIt() throws {
        let url = try #require(testPostgresURL)
        let right = try passwordOfTestServer()
        let wrong = "Wr0ng-p@ss:w/rd?x%y"
        let encoded = "Wr0ng-p%40ss%3Aw%2Frd%3Fx%25y"
        let bad = url.replacingOccurrences(of: ":\(right)@", with: ":\(encoded)@")
        #expect(bad != url)
        let e = try #require(pgError { () throws(PGError) in _ = try PGConnection(bad) })
        #expect(e.kind == .connection)
        #expect(e.connectionLost)
        #expect(e.message.contains("password authentication failed for user \"overseer\""), "\(e.message)")
        #expect(e.message.hasPrefix("cannot connect to PostgreSQL at postgres://overseer:***@"), "\(e.message)")
        for secret in [wrong, encoded, right, "p@ss", "Wr0ng"] {
            #expect(!e.message.contains(secret), "\(e.message)")
            #expect(!e.description.contains(secret))
        }

        let parts = try #require(URLComponents(string: url))
        let keyValue = "host=\(parts.host!) port=\(parts.port!) user=overseer dbname=overseer password='\(wrong) with spaces'"
        let kv = try #require(pgError { () throws(PGError) in _ = try PGConnection(keyValue) })
        #expect(kv.kind == .connection)
        #expect(kv.message.contains("password=***"), "\(kv.message)")
        for secret in [wrong, "with spaces", right] { #expect(!kv.message.contains(secret), "\(kv.message)") }

        // libpq quotes pieces of a string it cannot parse; a password's pieces must not show.
        let broken = try #require(pgError { () throws(PGError) in _ = try PGConnection("host=x password=secret1 tail2") })
        #expect(!broken.message.contains("secret1") && !broken.message.contains("tail2"), "\(broken.message)")
        #expect(broken.message.hasSuffix(": missing \"=\" after \"***\" in connection info string"), "\(broken.message)")
        let option = try #require(pgError { () throws(PGError) in _ = try PGConnection("postgres://h/db?nonsense=1&password=zz") })
        #expect(option.message == "cannot connect to PostgreSQL at postgres://h/db?nonsense=1&password=***: invalid URI query parameter: \"nonsense\"")
        #expect(broken.kind == .connection)
    }

    @Test func aRefusedConnectionSaysWhere() throws {
        let url = try #require(testPostgresURL)
        let right = try passwordOfTestServer()
        let parts = try #require(URLComponents(string: url))
        let closed = url.replacingOccurrences(of: ":\(parts.port!)/", with: ":1/")
        let e = try #require(pgError { () throws(PGError) in _ = try PGConnection(withConnectionDefaults(closed)) })
        #expect(e.kind == .connection)
        #expect(e.message.hasPrefix("cannot connect to PostgreSQL at postgres://overseer:***@\(parts.host!):1/overseer?connect_timeout=5"), "\(e.message)")
        #expect(e.message.contains(": connection refused. Is the server running"), "\(e.message)")
        #expect(!e.message.contains(right))
    }

    @Test func closeIsIdempotentAndResetReconnects() throws {
        let conn = try connectToTestServer()
        conn.close()
        conn.close()
        #expect(!conn.isOK)
        #expect(conn.socket == -1)
        let e = try #require(pgError { () throws(PGError) in try conn.exec("SELECT 1") })
        #expect(e.kind == .connection && e.connectionLost)
        #expect(e.message.contains("is closed"))
        try conn.reset()
        #expect(try conn.exec("SELECT 2").int64(0, 0) == 2)
        try conn.reset()
        #expect(try conn.exec("SELECT 3", []).int64(0, 0) == 3)
    }

    @Test func aTerminatedBackendIsALostConnection() throws {
        let victim = try connectToTestServer(), killer = try connectToTestServer()
        let r = try killer.exec("SELECT pg_terminate_backend($1, 5000)", [.int32(victim.backendPID)])
        #expect(r.bool(0, 0) == true)
        let e = try #require(pgError { () throws(PGError) in try victim.exec("SELECT 1") })
        #expect(e.connectionLost, "\(e)")
        #expect(e.kind == .connection)
        #expect(!victim.isOK)
        try victim.reset()
        #expect(try victim.exec("SELECT 1").int64(0, 0) == 1)
    }

    /// The store's connections tell the server to give up on a client that vanished (docs/postgres.md,
    /// "Many hosts"), unless the server's or the connection's own settings say otherwise.
    @Test func storeSessionsBoundHowLongTheServerWaitsForAVanishedClient() throws {
        let writer = try connectToTestServer()
        try PostgresBackend.configureSession(writer, writer: true)
        #expect(try writer.exec("SHOW idle_in_transaction_session_timeout").string(0, 0) == "10s")
        #expect(try writer.exec("SHOW tcp_keepalives_idle").string(0, 0) == "5")
        #expect(try writer.exec("SHOW tcp_keepalives_interval").string(0, 0) == "2")
        #expect(try writer.exec("SHOW tcp_keepalives_count").string(0, 0) == "3")
        #expect(try writer.exec("SHOW tcp_user_timeout").string(0, 0) == "10000")
        // Readers hold no lock that writers wait for: their transactions may idle.
        let reader = try connectToTestServer()
        try PostgresBackend.configureSession(reader, writer: false)
        #expect(try reader.exec("SHOW idle_in_transaction_session_timeout").string(0, 0) == "0")
        #expect(try reader.exec("SHOW tcp_keepalives_idle").string(0, 0) == "5")
        // A value the connection asked for stays.
        let url = try #require(testPostgresURL)
        let own = try PGConnection(withConnectionDefaults(url + (url.contains("?") ? "&" : "?") + "options=-c%20idle_in_transaction_session_timeout%3D20s"))
        try PostgresBackend.configureSession(own, writer: true)
        #expect(try own.exec("SHOW idle_in_transaction_session_timeout").string(0, 0) == "20s")
        #expect(try own.exec("SHOW tcp_user_timeout").string(0, 0) == "10000")
    }

    @Test func copyIsRefusedAndTheConnectionStaysUsable() throws {
        let conn = try connectToTestServer()
        try withSchema(conn) { s in
            try conn.exec("CREATE TABLE \(s).c (x int4)")
            let out = try #require(pgError { () throws(PGError) in try conn.exec("COPY (SELECT generate_series(1, 1000)) TO STDOUT") })
            #expect(out.kind == .protocolError)
            #expect(try conn.exec("SELECT 1").int64(0, 0) == 1)
            let into = try #require(pgError { () throws(PGError) in try conn.exec("COPY \(s).c FROM STDIN") })
            #expect(into.kind == .protocolError)
            #expect(conn.transactionStatus == .idle)
            #expect(try conn.exec("SELECT count(*) FROM \(s).c").int64(0, 0) == 0)
        }
    }

    @Test(.enabled(if: testPostgresDir != nil, "OVERSEER_TEST_PG_DIR is not set: the server was not made by scripts/pg-test-server.sh"))
    func aKilledServerIsALostConnectionAndResetRecovers() throws {
        // A server of this test's own: killing the shared one would fail the tests running beside it.
        let server = try PrivatePGServer()
        defer { server.destroy() }
        let conn = try PGConnection(withConnectionDefaults(server.url))
        try conn.exec("CREATE TABLE kept (x int8); INSERT INTO kept VALUES (7)")
        try server.kill()

        let e = try #require(pgError { () throws(PGError) in try conn.exec("SELECT x FROM kept") })
        #expect(e.connectionLost, "\(e)")
        #expect(e.kind == .connection)
        #expect(e.message.hasPrefix("lost the connection to PostgreSQL at postgres://overseer:***@"), "\(e.message)")
        #expect(!conn.isOK)
        let down = try #require(pgError { () throws(PGError) in try conn.reset() })
        #expect(down.connectionLost)
        #expect(down.message.contains("cannot reconnect"), "\(down.message)")
        let params = try #require(pgError { () throws(PGError) in try conn.exec("SELECT $1::int8", [.int64(1)]) })
        #expect(params.connectionLost)

        try server.restart()
        try conn.reset()
        #expect(conn.isOK)
        #expect(try conn.exec("SELECT x FROM kept", []).int64(0, 0) == 7)
    }
}

/// The connection-string helpers need no server.
@Suite struct ConnectionStringTests {
    @Test func redactsURIs() {
        let cases: [(String, String)] = [
            ("postgres://u:secret@host:5432/db", "postgres://u:***@host:5432/db"),
            ("postgresql://u:p@ss:w/rd@127.0.0.1:55432/db", "postgresql://u:***@127.0.0.1:55432/db"),
            ("postgres://u:p%40ss%2Fw%3A@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa?ss@h/db?sslmode=disable", "postgres://u:***@h/db?sslmode=disable"),
            ("postgres://u:@h/db", "postgres://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            ("postgres://", "postgres://"),
            ("postgres://h/db?password=secret&sslmode=disable", "postgres://h/db?password=***&sslmode=disable"),
            ("postgres://h/db?sslmode=require&password=se&cret", "postgres://h/db?sslmode=require&password=***"),
            ("postgres://h/db?PASSWORD=secret", "postgres://h/db?PASSWORD=***"),
            ("postgres://h/db?pass%77ord=secret", "postgres://h/db?pass%77ord=***"),
            ("postgres://u:pw1@h1:5432,h2:5433/db?sslpassword=key1", "postgres://u:***@h1:5432,h2:5433/db?sslpassword=***"),
            ("POSTGRES://u:secret@h/db", "POSTGRES://u:***@h/db"),
            ("  postgres://u:secret@h/db", "  postgres://u:***@h/db"),
            ("postgres://u:sécrèt🔑@[::1]:5432/db", "postgres://u:***@[::1]:5432/db"),
            ("postgres://u%3Aname:secret@h/db", "postgres://u%3Aname:***@h/db"),
        ]
        for (input, expected) in cases {
            #expect(redactConnectionString(input) == expected, "\(input)")
        }
        // A '@' in the query hides more than it must, never less.
        let odd = redactConnectionString("postgres://u:secret@h/db?application_name=me@x")
        #expect(!odd.contains("secret"), "\(odd)")
    }

    @Test func redactsKeyValueStrings() {
        let cases: [(String, String)] = [
            ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
            ("password='with space \\' quote' host=h", "password=*** host=h"),
            ("password = spaced host=h", "password = *** host=h"),
            ("host=h password=abc def", "host=h password=*** ***"),
            ("host=h PASSWORD=secret", "host=h PASSWORD=***"),
            ("sslpassword=k1 host=h", "sslpassword=*** host=h"),
            ("host=h password='open port=1", "host=h password=***"),
            ("host=h password=p\\ w port=1", "host=h password=*** port=1"),
            ("dbname='postgres://u:secret@h/db' connect_timeout=5", "dbname='postgres://u:***@h/db' connect_timeout=5"),
            ("dbname=postgres://u:secret@h/db", "dbname=postgres://u:***@h/db"),
            ("host=h\tport=5\n password=x", "host=h\tport=5\n password=***"),
            ("mydb", "mydb"),
            ("", ""),
            ("host=h port=5432", "host=h port=5432"),
        ]
        for (input, expected) in cases {
            #expect(redactConnectionString(input) == expected, "\(input)")
        }
    }

    @Test func theRedactionKnowsTheSecretsForScrubbing() {
        let r = ConnectionStringRedaction("postgres://u:p%40ss%2Fw@h/db?sslpassword=k%20ey")
        #expect(Set(r.secrets) == ["p%40ss%2Fw", "p@ss/w", "k%20ey", "k ey"])
        let scrub = Scrubber(conninfo: "x", redacted: "y", secrets: r.secrets)
        #expect(scrub("no p@ss/w or k ey or ss/w here") == "no *** or *** or ss/w here")
        // Pieces of a password: libpq reads user:p@ss@host as password "p" at host "ss@host".
        let pieces = Scrubber(conninfo: "", redacted: "", secrets: ["abc@defg"])
        #expect(pieces("could not translate host name \"defg@host\"") == "could not translate host name \"***@host\"")
    }

    @Test func addsTheConnectionDefaults() throws {
        let all = "connect_timeout=5&keepalives=1&keepalives_idle=5&keepalives_interval=2&keepalives_count=3&tcp_user_timeout=10000&application_name=overseer"
        #expect(withConnectionDefaults("postgres://u:pw@h:5432/db") == "postgres://u:pw@h:5432/db?" + all)
        #expect(withConnectionDefaults("postgres://u:pa%3Fss@h/db") == "postgres://u:pa%3Fss@h/db?" + all)
        #expect(withConnectionDefaults("postgres://h/db?sslmode=disable") == "postgres://h/db?sslmode=disable&" + all)
        #expect(withConnectionDefaults("") == all.replacingOccurrences(of: "&", with: " "))
        #expect(withConnectionDefaults("host=h dbname=d") == "host=h dbname=d " + all.replacingOccurrences(of: "&", with: " "))

        // Never over what the caller set.
        let own = withConnectionDefaults("postgres://h/db?connect_timeout=30&application_name=mine&keepalives=0")
        let parsed = try #require(parseConnectionOptions(own))
        #expect(parsed["connect_timeout"] == "30")
        #expect(parsed["application_name"] == "mine")
        #expect(parsed["keepalives"] == "0")
        #expect(parsed["tcp_user_timeout"] == "10000")
        let kv = try #require(parseConnectionOptions(withConnectionDefaults("host=h tcp_user_timeout=500 keepalives_idle=60")))
        #expect(kv["tcp_user_timeout"] == "500")
        #expect(kv["keepalives_idle"] == "60")
        #expect(kv["connect_timeout"] == "5")
        #expect(kv["host"] == "h")
        let everything = "postgres://h/db?" + all.replacingOccurrences(of: "overseer", with: "x")
        #expect(withConnectionDefaults(everything) == everything)

        // What libpq cannot parse stays as it is, for the connection attempt to report.
        #expect(withConnectionDefaults("host='unterminated") == "host='unterminated")
        #expect(withConnectionDefaults("postgres://h/db?nonsense=1") == "postgres://h/db?nonsense=1")
    }

    @Test func errorsNameTheirKind() {
        #expect(PGError.kind(sqlState: "08006", connectionBad: false) == .connection)
        #expect(PGError.kind(sqlState: "57P01", connectionBad: false) == .connection)
        #expect(PGError.kind(sqlState: "23505", connectionBad: true) == .connection)
        #expect(PGError.kind(sqlState: "23503", connectionBad: false) == .query)
        #expect(PGError(kind: .query, sqlState: "57P03", message: "m").connectionLost)
        #expect(!PGError(kind: .serialization, sqlState: "40001", message: "m").connectionLost)
        #expect(PGError(kind: .query, message: "plain").description == "plain")
        #expect(pgQuoteIdentifier("a\"b") == "\"a\"\"b\"")
    }
}

/// The test server's password, from its URL.
func passwordOfTestServer() throws -> String {
    let url = try #require(testPostgresURL)
    return try #require(URLComponents(string: url)?.password)
}

/// Polls `sql` (one bool) on `conn` until it is true, for up to 10 s.
func waitUntil(_ conn: PGConnection, _ sql: String, _ params: [PGParam]) throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        let r = try conn.exec(sql, params)
        if r.rowCount > 0 && r.bool(0, 0) == true { return }
        Thread.sleep(forTimeInterval: 0.02)
    }
    Issue.record("timed out waiting for: \(sql)")
}

import CCrypto
import CLibPQ
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A statement parameter for `PGConnection.exec(_:_:)`. `.null` and `.text` go in the text format with
/// no type (the server infers it, so write `$1::text` where it cannot); `.bytes` goes as binary bytea
/// (OID 17), `.int64` as binary int8 (OID 20), `.int32` as binary int4 (OID 23).
public enum PGParam: Sendable {
    case null, text(String), bytes([UInt8]), int64(Int64), int32(Int32)
}

/// One NOTIFY: its channel, its payload ("" when none) and the PID of the backend that sent it.
public struct PGNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    public let pid: Int32

    public init(channel: String, payload: String, pid: Int32) {
        self.channel = channel
        self.payload = payload
        self.pid = pid
    }
}

/// PQtransactionStatus: where the connection stands between statements.
public enum PGTransactionStatus: Sendable {
    /// Not in a transaction block.
    case idle
    /// A statement is in progress (never seen between this wrapper's calls).
    case active
    /// In a transaction block (after BEGIN).
    case inTransaction
    /// In a failed transaction block: everything but ROLLBACK fails until it ends.
    case inFailedTransaction
    /// The connection is bad.
    case unknown
}

/// One libpq connection.
///
/// Not thread-safe: one thread uses it at a time. It is `@unchecked Sendable` so that it can move
/// into a Thread's closure or sit in a pool guarded by a Mutex; whoever holds it must not share it.
/// (libpq itself is thread-safe across connections.) `makeCancelToken()` gives a token that any
/// thread may use while another runs a statement here.
///
/// The connection's client_encoding is always UTF8. Server notices (NOTICE, WARNING) are discarded
/// rather than printed on stderr. `synchronous_commit` is left at the server's default (on).
public final class PGConnection: @unchecked Sendable {
    private var handle: OpaquePointer?
    private let conninfo: String
    private let scrub: Scrubber
    /// The connection string with its password redacted, as messages show it.
    public let target: String

    /// conninfo: a postgres:// or postgresql:// URI or key=value string, passed to libpq as is (as
    /// PQconnectdbParams' expanded dbname, so that client_encoding=UTF8 can be added after it; a
    /// string without '=' or a scheme is a database name). Blocks until connected or failed; see
    /// `withConnectionDefaults` for timeouts.
    /// Throws PGError(.connection) with a message that never contains the password.
    public init(_ conninfo: String) throws(PGError) {
        self.conninfo = conninfo
        let redaction = ConnectionStringRedaction(conninfo)
        target = redaction.text
        var secrets = redaction.secrets
        if let parsed = parseConnectionOptions(conninfo) {
            for key in ConnectionStringRedaction.secretKeys { if let v = parsed[key] { secrets.append(v) } }
        }
        _ = Self.noLibcryptoCleanupAtExit
        let h = Self.connect(conninfo)
        if let h, let p = PQpass(h) { secrets.append(String(cString: p)) }  // also a password from ~/.pgpass
        scrub = Scrubber(conninfo: conninfo, redacted: redaction.text, secrets: secrets)
        guard let h else {
            throw PGError(kind: .connection, message: "cannot connect to PostgreSQL at \(target): libpq is out of memory")
        }
        handle = h
        if PQstatus(h) != CONNECTION_OK {
            let why = connectFailure(h, parseable: parseConnectionOptions(conninfo) != nil)
            PQfinish(h)
            handle = nil
            throw PGError(kind: .connection, message: "cannot connect to PostgreSQL at \(target): \(why)")
        }
        try prepare(h)
    }

    deinit { close() }

    /// libpq authenticates (SCRAM) and encrypts with libcrypto. libcrypto's atexit cleanup freed
    /// state that a thread still connecting at exit was using (a store's listener thread, as a short
    /// command such as `overseer verify` exited): the process died of SIGSEGV after printing its
    /// result, in about 3 runs of 100. Told before libpq first uses it not to register that cleanup,
    /// libcrypto leaves its memory to the exiting process instead (the core does the same).
    private static let noLibcryptoCleanupAtExit: Void = {
        _ = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    }()

    /// PQstatus == CONNECTION_OK. False after close(), or once libpq noticed the connection broke.
    public var isOK: Bool {
        guard let h = handle else { return false }
        return PQstatus(h) == CONNECTION_OK
    }

    /// PQreset: closes the connection and opens it again with the same options (a closed
    /// PGConnection connects afresh). Session state is gone: LISTENs, SETs, prepared statements,
    /// temporary tables. Throws PGError(.connection) when it is still not OK.
    public func reset() throws(PGError) {
        guard let h = handle else {
            guard let fresh = Self.connect(conninfo) else {
                throw PGError(kind: .connection, message: "cannot reconnect to PostgreSQL at \(target): libpq is out of memory")
            }
            handle = fresh
            return try afterReset(fresh)
        }
        PQreset(h)
        try afterReset(h)
    }

    private func afterReset(_ h: OpaquePointer) throws(PGError) {
        guard PQstatus(h) == CONNECTION_OK else {
            throw PGError(kind: .connection, message: "cannot reconnect to PostgreSQL at \(target): \(connectFailure(h, parseable: true))")
        }
        try prepare(h)
    }

    /// Simple query protocol (may hold several statements; the last one's result is returned), text
    /// results. For DDL, BEGIN, COMMIT, LISTEN...
    @discardableResult
    public func exec(_ sql: String) throws(PGError) -> PGResult {
        let h = try live()
        try checkSQL(sql)
        return try finish(PQexec(h, sql), h)
    }

    /// Several statements in one simple-protocol string, sent in one round trip (PQsendQuery), with
    /// one text-format result per statement, in order. The server runs them one after the other and
    /// stops at the first that fails: that one's error is thrown with `statement` set to its index,
    /// and the statements after it did not run. When the connection is lost, `statement` is the
    /// first one whose result did not arrive; it and the later ones may or may not have run (a lost
    /// COMMIT has an unknown outcome). The server parses the whole string before it runs any of it,
    /// so a syntax error anywhere fails it at statement 0 with nothing run. Outside a transaction
    /// block the server runs the string as one implicit transaction. The statements are joined with
    /// ";" and must not contain one themselves outside literals, and must not take parameters
    /// (write constants as literals).
    @discardableResult
    public func exec(statements: [String]) throws(PGError) -> [PGResult] {
        let h = try live()
        guard !statements.isEmpty else { return [] }
        let sql = statements.joined(separator: "; ")
        try checkSQL(sql)
        guard PQsendQuery(h, sql) == 1 else {
            var e = failure(nil, h)
            e.statement = 0
            throw e
        }
        var results: [PGResult] = []
        var failed: PGError?
        // Every result up to the NULL that ends the query must be read, also after a failure.
        while let r = PQgetResult(h) {
            if failed != nil {
                PQclear(r)
                continue
            }
            do {
                results.append(try finish(r, h))
            } catch {
                var e = error
                e.statement = results.count
                failed = e
            }
        }
        if let failed { throw failed }
        guard results.count == statements.count else {
            var e = PQstatus(h) != CONNECTION_OK
                ? failure(nil, h)
                : PGError(kind: .protocolError, message: "\(statements.count) statements gave \(results.count) results (a statement contains a \";\"?)")
            e.statement = min(results.count, statements.count - 1)
            throw e
        }
        return results
    }

    /// PQexecParams with binary results (resultFormat 1): one statement, parameters $1, $2, ...
    /// See PGParam for how each kind is sent. A text parameter may not contain a NUL character.
    @discardableResult
    public func exec(_ sql: String, _ params: [PGParam]) throws(PGError) -> PGResult {
        let h = try live()
        try checkSQL(sql)
        guard params.count <= 65535 else {
            throw PGError(kind: .protocolError, message: "a statement takes at most 65535 parameters, not \(params.count)")
        }
        var types = [Oid](repeating: 0, count: params.count)
        var lengths = [Int32](repeating: 0, count: params.count)
        var formats = [Int32](repeating: 0, count: params.count)
        var offsets = [Int?](repeating: nil, count: params.count)
        var total = 0
        for (i, p) in params.enumerated() {
            let size: Int
            switch p {
            case .null: continue
            case .text(let s):
                if s.utf8.contains(0) {
                    throw PGError(kind: .protocolError, message: "text parameter $\(i + 1) contains a NUL character, which PostgreSQL text cannot hold")
                }
                size = s.utf8.count + 1
            case .bytes(let b): (size, types[i], formats[i]) = (b.count, 17, 1)
            case .int64: (size, types[i], formats[i]) = (8, 20, 1)
            case .int32: (size, types[i], formats[i]) = (4, 23, 1)
            }
            offsets[i] = total
            lengths[i] = Int32(size)
            total += size
        }
        guard total <= Int(Int32.max) else {
            throw PGError(kind: .protocolError, message: "the parameters take \(total) bytes; a message to the server can hold less than 1 GiB")
        }
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(total, 1))
        defer { buffer.deallocate() }
        let raw = UnsafeMutableRawPointer(buffer)
        for (i, p) in params.enumerated() {
            guard let at = offsets[i] else { continue }
            switch p {
            case .null: break
            case .text(let s):
                var s = s
                s.withUTF8 { u in
                    if let base = u.baseAddress { (raw + at).copyMemory(from: base, byteCount: u.count) }
                    raw.storeBytes(of: 0, toByteOffset: at + u.count, as: UInt8.self)
                }
            case .bytes(let b):
                b.withUnsafeBytes { u in
                    if let base = u.baseAddress { (raw + at).copyMemory(from: base, byteCount: u.count) }
                }
            case .int64(let v): raw.storeBytes(of: v.bigEndian, toByteOffset: at, as: Int64.self)
            case .int32(let v): raw.storeBytes(of: v.bigEndian, toByteOffset: at, as: Int32.self)
            }
        }
        let values: [UnsafePointer<CChar>?] = offsets.map { $0.map { UnsafePointer(buffer + $0) } }
        let r = PQexecParams(h, sql, Int32(params.count), types, values, lengths, formats, 1)
        return try finish(r, h)
    }

    /// PQsocket: the connection's file descriptor, for poll()/select(); -1 when there is none.
    public var socket: Int32 {
        guard let h = handle else { return -1 }
        return PQsocket(h)
    }

    /// PQconsumeInput, then every notification libpq holds (including ones that arrived during
    /// earlier statements). Does not block. Throws PGError(.connection) on a broken connection.
    public func notifications() throws(PGError) -> [PGNotification] {
        let h = try live()
        if PQconsumeInput(h) == 0 { throw failure(nil, h) }
        var out: [PGNotification] = []
        while let n = PQnotifies(h) {
            out.append(PGNotification(
                channel: String(cString: n.pointee.relname), payload: n.pointee.extra.map { String(cString: $0) } ?? "",
                pid: n.pointee.be_pid))
            PQfreemem(n)
        }
        return out
    }

    /// Waits up to `timeout` for notifications (poll() on the socket); returns them, or [] on timeout.
    public func waitForNotifications(timeout: Duration) throws(PGError) -> [PGNotification] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let got = try notifications()
            if !got.isEmpty { return got }
            let left = deadline - clock.now
            if left <= .zero { return [] }
            let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1
            var fd = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            if poll(&fd, 1, Int32(clamping: ms)) < 0, errno != EINTR {
                throw PGError(kind: .connection, message: "poll() on the connection to PostgreSQL at \(target) failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// PQserverVersion: e.g. 150018 for 15.18; 0 when not connected.
    public var serverVersion: Int {
        guard let h = handle else { return 0 }
        return Int(PQserverVersion(h))
    }

    /// PQbackendPID: the server process serving this connection (a NOTIFY's `pid` when it sent one).
    public var backendPID: Int32 {
        guard let h = handle else { return 0 }
        return PQbackendPID(h)
    }

    /// PQtransactionStatus. A pooled connection should be `.idle` when it goes back to the pool.
    public var transactionStatus: PGTransactionStatus {
        guard let h = handle else { return .unknown }
        switch PQtransactionStatus(h) {
        case PQTRANS_IDLE: return .idle
        case PQTRANS_ACTIVE: return .active
        case PQTRANS_INTRANS: return .inTransaction
        case PQTRANS_INERROR: return .inFailedTransaction
        default: return .unknown
        }
    }

    /// A token that cancels the statement running on this connection, from any thread (PQcancel).
    /// It belongs to the current server session: make a new one after reset(). nil when not connected.
    public func makeCancelToken() -> PGCancelToken? {
        guard let h = handle, let c = PQgetCancel(h) else { return nil }
        return PGCancelToken(c, target: target)
    }

    /// PQfinish. Idempotent; deinit closes too. Statements afterwards throw PGError(.connection);
    /// reset() connects again.
    public func close() {
        if let h = handle { PQfinish(h) }
        handle = nil
    }

    // MARK: - Internals

    private static func connect(_ conninfo: String) -> OpaquePointer? {
        // dbname is expanded as a whole connection string (expand_dbname 1); client_encoding after it wins.
        let owned: [UnsafeMutablePointer<CChar>?] = ["dbname", "client_encoding", conninfo, "UTF8"].map { (s: String) in strdup(s) }
        defer { owned.forEach { free($0) } }
        let k: [UnsafePointer<CChar>?] = [UnsafePointer(owned[0]), UnsafePointer(owned[1]), nil]
        let v: [UnsafePointer<CChar>?] = [UnsafePointer(owned[2]), UnsafePointer(owned[3]), nil]
        return PQconnectdbParams(k, v, 1)
    }

    /// Settings every connection gets once connected (again after a reset).
    private func prepare(_ h: OpaquePointer) throws(PGError) {
        PQsetNoticeReceiver(h, { _, _ in }, nil)
        let encoding = PQparameterStatus(h, "client_encoding").map { String(cString: $0) }
        if encoding != "UTF8", PQsetClientEncoding(h, "UTF8") != 0 {
            throw PGError(kind: .connection, message: "PostgreSQL at \(target) would not use UTF8 as client_encoding: \(oneLine(PQerrorMessage(h)))")
        }
    }

    private func live() throws(PGError) -> OpaquePointer {
        guard let h = handle else {
            throw PGError(kind: .connection, message: "the connection to PostgreSQL at \(target) is closed")
        }
        return h
    }

    private func checkSQL(_ sql: String) throws(PGError) {
        if sql.utf8.contains(0) {
            throw PGError(kind: .protocolError, message: "the SQL text contains a NUL character")
        }
    }

    /// Wraps a successful result, or throws for the failed one (freeing it either way when thrown).
    private func finish(_ r: OpaquePointer?, _ h: OpaquePointer) throws(PGError) -> PGResult {
        guard let r else { throw failure(nil, h) }
        switch PQresultStatus(r) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return PGResult(r)
        case let status where status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH:
            PQclear(r)
            abandonCopy(h, status)
            throw PGError(kind: .protocolError, message: "COPY FROM STDIN / TO STDOUT is not supported by this connection wrapper")
        default:
            let e = failure(r, h)
            PQclear(r)
            throw e
        }
    }

    /// Ends a COPY the caller started by mistake, so that the connection stays usable.
    private func abandonCopy(_ h: OpaquePointer, _ status: ExecStatusType) {
        if status == PGRES_COPY_OUT {
            var buf: UnsafeMutablePointer<CChar>?
            while PQgetCopyData(h, &buf, 0) > 0 {
                PQfreemem(buf)
                buf = nil
            }
        } else {
            _ = PQputCopyEnd(h, "COPY is not supported by Overseer's libpq wrapper")
        }
        while let r = PQgetResult(h) { PQclear(r) }
    }

    /// The error for a failed statement (`r` nil when libpq returned no result).
    private func failure(_ r: OpaquePointer?, _ h: OpaquePointer) -> PGError {
        func field(_ code: UInt8) -> String? {
            guard let r, let p = PQresultErrorField(r, Int32(code)) else { return nil }
            return scrub(oneLine(p))
        }
        let bad = PQstatus(h) != CONNECTION_OK
        let state = field(UInt8(ascii: "C"))
        let detail = field(UInt8(ascii: "D"))
        var text: String
        if let primary = field(UInt8(ascii: "M")) {
            text = primary
            if let detail { text += " (\(detail))" }
            if let hint = field(UInt8(ascii: "H")) { text += " Hint: \(hint)" }
        } else {
            let own = r.map { oneLine(PQresultErrorMessage($0)) } ?? ""
            text = scrub(own.isEmpty ? oneLine(PQerrorMessage(h)) : own)
            if text.isEmpty { text = "libpq reported a failure without a message" }
        }
        let kind: PGError.Kind
        if r == nil || PQresultStatus(r) == PGRES_FATAL_ERROR || PQresultStatus(r) == PGRES_NONFATAL_ERROR {
            kind = PGError.kind(sqlState: state, connectionBad: bad)
        } else {
            kind = bad ? .connection : .protocolError
        }
        if kind == .connection, state == nil || bad {
            text = "lost the connection to PostgreSQL at \(target): \(text)"
        }
        return PGError(
            kind: kind, sqlState: state, message: text, detail: detail, constraint: field(UInt8(ascii: "n")),
            table: field(UInt8(ascii: "t")))
    }

    /// libpq's message for a failed connection attempt, on one line and without the password.
    private func connectFailure(_ h: OpaquePointer, parseable: Bool) -> String {
        var text = scrub(String(cString: PQerrorMessage(h)))
        if !parseable {
            // A syntax error quotes pieces of the string, which may be pieces of a password: keep
            // only libpq keywords and pieces the redacted string shows anyway, outside any secret.
            let keywords = libpqKeywords()
            text = text.replacing(/"([^"]*)"/) { m in
                let piece = String(m.1)
                let shown = keywords.contains(piece) || (target.contains(piece) && !scrub.touches(piece))
                return shown ? "\"\(piece)\"" : "\"…\""
            }
        }
        text = oneLine(text)
        // One attempt: the target already says where, so drop libpq's "connection to server at ... failed:".
        let attempt = #/connection to server (at|on socket) "[^"]*"( \([^)]*\))?(, port [0-9]+)? failed: /#
        if text.matches(of: attempt).count == 1 { text = text.replacing(attempt, with: "") }
        text = text.replacing(#/^(FATAL|ERROR): +/#, with: "")
        if let first = text.first, first.isUppercase, let second = text.dropFirst().first, second.isLowercase {
            text = first.lowercased() + text.dropFirst()
        }
        return text.isEmpty ? "libpq gave no reason" : text
    }
}

/// Cancels the statement running on a connection (PQcancel), from any thread. libpq reads the
/// PGcancel object only, so concurrent use with the connection is safe.
public final class PGCancelToken: @unchecked Sendable {
    private let handle: OpaquePointer
    private let target: String

    init(_ handle: OpaquePointer, target: String) {
        self.handle = handle
        self.target = target
    }

    deinit { PQfreeCancel(handle) }

    /// Asks the server to cancel the current statement; it then fails with `.queryCanceled`. Asking
    /// when nothing runs does nothing. Throws when the request could not be sent.
    public func cancel() throws(PGError) {
        var buffer = [CChar](repeating: 0, count: 256)
        if PQcancel(handle, &buffer, Int32(buffer.count)) == 0 {
            let why = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw PGError(kind: .connection, message: "could not send a cancel request to PostgreSQL at \(target): \(oneLine(why))")
        }
    }
}

/// Double-quotes an SQL identifier (schema, table, channel name), doubling any '"' in it.
public func pgQuoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// A libpq message on one line. libpq breaks lines and indents continuations with a tab: a line
/// that starts with a capital starts a sentence (". "), any other continues the last one (" ").
func oneLine(_ p: UnsafePointer<CChar>) -> String { oneLine(String(cString: p)) }

func oneLine(_ s: String) -> String {
    var out = ""
    for line in s.split(whereSeparator: \.isNewline) {
        let text = line.replacing(/\s+/, with: " ").trimmingCharacters(in: .whitespaces)
        guard let first = text.first else { continue }
        if let last = out.last {
            out += first.isUppercase && !".?!:;".contains(last) ? ". " : " "
        }
        out += text
    }
    return out
}

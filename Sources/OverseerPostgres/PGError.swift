/// A failure from libpq or the server. Messages never contain the connection's password.
public struct PGError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// Cannot connect, or the connection is gone or unusable (see `connectionLost`).
        case connection
        /// Any other error the server reported (syntax, constraint other than unique, permission, ...).
        case query
        /// SQLSTATE 23505.
        case uniqueViolation
        /// SQLSTATE 40001: the transaction should be retried.
        case serialization
        /// SQLSTATE 40P01: the transaction should be retried.
        case deadlock
        /// SQLSTATE 57014: statement_timeout, or a cancel request (PGCancelToken).
        case queryCanceled
        /// Something libpq or this wrapper did not expect (a COPY, a malformed reply, a NUL byte in SQL).
        case protocolError
    }

    public let kind: Kind
    /// PG_DIAG_SQLSTATE, when the server sent one (libpq's own failures, such as a lost connection, have none).
    public let sqlState: String?
    /// The server's or libpq's message on one line, with the detail and hint when there are any.
    public let message: String
    /// The server's DETAIL line alone (e.g. "Key (id)=(1) already exists."), when it sent one.
    public let detail: String?
    /// The constraint a violation names (PG_DIAG_CONSTRAINT_NAME), e.g. the unique index of a 23505.
    public let constraint: String?
    /// The table an error names (PG_DIAG_TABLE_NAME), e.g. the table of a violated constraint.
    public let table: String?
    /// For `PGConnection.exec(statements:)`: the index of the statement that failed (0-based).
    /// The statements before it ran; the ones after it did not. nil for a single statement.
    public internal(set) var statement: Int?

    public init(
        kind: Kind, sqlState: String? = nil, message: String, detail: String? = nil, constraint: String? = nil,
        table: String? = nil, statement: Int? = nil
    ) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.constraint = constraint
        self.table = table
        self.statement = statement
    }

    /// True when the connection is unusable: kind `.connection` (a failed connect, PQstatus bad after
    /// the failure, a closed PGConnection), or SQLSTATE class 08, or 57P01/57P02/57P03 (admin shutdown,
    /// crash shutdown, cannot connect now). reset() or a new connection may recover; the statement's
    /// outcome is unknown when it was a COMMIT.
    public var connectionLost: Bool {
        if kind == .connection { return true }
        guard let s = sqlState else { return false }
        return s.hasPrefix("08") || s == "57P01" || s == "57P02" || s == "57P03"
    }

    public var description: String {
        if let sqlState { return "\(message) (SQLSTATE \(sqlState))" }
        return message
    }

    /// The kind for a server error, or for a failure after which the connection is bad.
    static func kind(sqlState: String?, connectionBad: Bool) -> Kind {
        if connectionBad { return .connection }
        switch sqlState {
        case "23505": return .uniqueViolation
        case "40001": return .serialization
        case "40P01": return .deadlock
        case "57014": return .queryCanceled
        case "57P01", "57P02", "57P03": return .connection
        case let s? where s.hasPrefix("08"): return .connection
        default: return .query
        }
    }
}

import CLibPQ

/// The rows of one statement. Owns the libpq PGresult (freed on deinit) and reads values in place:
/// `withBytes` hands out libpq's own buffer, `bytes` copies once.
///
/// Values are in the binary format for `PGConnection.exec(_:_:)` and the text format for
/// `exec(_:)`. A PGresult is read-only once made, so a PGResult may be read from any thread.
/// Row and column indexes out of range are a programming error (precondition).
public final class PGResult: @unchecked Sendable {
    private let handle: OpaquePointer
    public let rowCount: Int
    public let columnCount: Int

    init(_ handle: OpaquePointer) {
        self.handle = handle
        rowCount = Int(PQntuples(handle))
        columnCount = Int(PQnfields(handle))
    }

    deinit { PQclear(handle) }

    /// PQcmdTuples: rows an INSERT, UPDATE, DELETE, MERGE, SELECT, MOVE, FETCH or COPY touched; 0 otherwise.
    public var commandTuples: Int { Int(String(cString: PQcmdTuples(handle))) ?? 0 }

    /// PQcmdStatus: the command tag, e.g. "INSERT 0 1", "BEGIN", "SELECT 3".
    public var commandStatus: String { String(cString: PQcmdStatus(handle)) }

    public func columnName(_ column: Int) -> String {
        checkColumn(column)
        return String(cString: PQfname(handle, Int32(column)))
    }

    /// The first column named exactly `name` (no case folding, unlike PQfnumber).
    public func columnIndex(_ name: String) -> Int? {
        (0..<columnCount).first { String(cString: PQfname(handle, Int32($0))) == name }
    }

    /// The column's type OID (PQftype): 16 bool, 17 bytea, 20 int8, 21 int2, 23 int4, 25 text, 1700 numeric...
    public func columnType(_ column: Int) -> UInt32 {
        checkColumn(column)
        return PQftype(handle, Int32(column))
    }

    /// Whether the column's values are in the binary format (PQfformat 1).
    public func isBinary(_ column: Int) -> Bool {
        checkColumn(column)
        return PQfformat(handle, Int32(column)) == 1
    }

    public func isNull(_ row: Int, _ column: Int) -> Bool {
        check(row, column)
        return PQgetisnull(handle, Int32(row), Int32(column)) == 1
    }

    /// Raw value bytes (binary format for exec(_:_:), text format for exec(_:)). nil when NULL.
    public func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
        withBytes(row, column) { Array($0) }
    }

    /// Calls `body` with the value's bytes in libpq's buffer (valid only during the call); nil when NULL.
    public func withBytes<T>(_ row: Int, _ column: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T? {
        check(row, column)
        let r = Int32(row), c = Int32(column)
        if PQgetisnull(handle, r, c) == 1 { return nil }
        let count = Int(PQgetlength(handle, r, c))
        guard let p = PQgetvalue(handle, r, c) else { return nil }
        return try body(UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: count))
    }

    /// A bytea value in either format: the bytes themselves in binary results; decoded from the
    /// text form (hex `\x...`, or the escape format under `bytea_output = escape`) with
    /// PQunescapeBytea in text results. nil when NULL or when the text does not decode.
    public func bytea(_ row: Int, _ column: Int) -> [UInt8]? {
        if isBinary(column) { return bytes(row, column) }
        check(row, column)
        let r = Int32(row), c = Int32(column)
        guard PQgetisnull(handle, r, c) == 0, let text = PQgetvalue(handle, r, c) else { return nil }
        var length = 0
        guard let decoded = text.withMemoryRebound(to: UInt8.self, capacity: 1, { PQunescapeBytea($0, &length) }) else { return nil }
        defer { PQfreemem(decoded) }
        return Array(UnsafeBufferPointer(start: decoded, count: length))
    }

    /// The value's bytes as UTF-8 (invalid sequences replaced). Right for text, varchar, name and json in
    /// either format, and for every type in text results; for other types in binary results it is
    /// their binary encoding, so use `int64`, `bool` or `bytes` there. nil when NULL.
    public func string(_ row: Int, _ column: Int) -> String? {
        withBytes(row, column) { String(decoding: $0, as: UTF8.self) }
    }

    /// Decodes binary int8/int4/int2/oid, or binary numeric when it holds an integer that fits (sum()
    /// and count-like expressions over int8 return numeric), by the column's PQftype; or text digits
    /// for text results. nil when NULL or not such an integer.
    public func int64(_ row: Int, _ column: Int) -> Int64? {
        let binary = isBinary(column)
        let type = columnType(column)
        return withBytes(row, column) { (b: UnsafeRawBufferPointer) -> Int64? in
            if !binary { return Int64(String(decoding: b, as: UTF8.self)) }
            switch (type, b.count) {
            case (20, 8): return Int64(bigEndian: b.loadUnaligned(as: Int64.self))
            case (23, 4): return Int64(Int32(bigEndian: b.loadUnaligned(as: Int32.self)))
            case (21, 2): return Int64(Int16(bigEndian: b.loadUnaligned(as: Int16.self)))
            case (26, 4): return Int64(UInt32(bigEndian: b.loadUnaligned(as: UInt32.self)))
            case (1700, _): return Self.integerFromNumeric(b)
            default: return nil
            }
        } ?? nil
    }

    /// Decodes binary bool (type 16) or text "t"/"f". nil when NULL or not a bool.
    public func bool(_ row: Int, _ column: Int) -> Bool? {
        let binary = isBinary(column)
        let type = columnType(column)
        return withBytes(row, column) { (b: UnsafeRawBufferPointer) -> Bool? in
            if !binary {
                switch String(decoding: b, as: UTF8.self) {
                case "t", "true": return true
                case "f", "false": return false
                default: return nil
                }
            }
            return type == 16 && b.count == 1 ? b[0] != 0 : nil
        } ?? nil
    }

    /// numeric's binary form: int16 ndigits, int16 weight, uint16 sign, uint16 dscale, then ndigits
    /// base-10000 digits, the first worth 10000^weight. An integer when every digit after the point is 0.
    static func integerFromNumeric(_ b: UnsafeRawBufferPointer) -> Int64? {
        guard b.count >= 8 else { return nil }
        func u16(_ at: Int) -> UInt16 { UInt16(bigEndian: b.loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
        let ndigits = Int(Int16(bitPattern: u16(0)))
        let weight = Int(Int16(bitPattern: u16(2)))
        let sign = u16(4)
        guard ndigits >= 0, b.count == 8 + 2 * ndigits, sign == 0 || sign == 0x4000 else { return nil }
        var magnitude: UInt64 = 0
        for i in 0..<max(ndigits, weight + 1) {
            let digit = i < ndigits ? UInt64(u16(8 + 2 * i)) : 0
            if i > weight {
                if digit != 0 { return nil }
                continue
            }
            let (m, o1) = magnitude.multipliedReportingOverflow(by: 10000)
            let (a, o2) = m.addingReportingOverflow(digit)
            if o1 || o2 { return nil }
            magnitude = a
        }
        if sign == 0x4000 {
            if magnitude == UInt64(Int64.max) + 1 { return Int64.min }
            return magnitude <= UInt64(Int64.max) ? -Int64(magnitude) : nil
        }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }

    private func check(_ row: Int, _ column: Int) {
        precondition(row >= 0 && row < rowCount, "PGResult: row \(row) is out of range (\(rowCount) rows)")
        checkColumn(column)
    }

    private func checkColumn(_ column: Int) {
        precondition(column >= 0 && column < columnCount, "PGResult: column \(column) is out of range (\(columnCount) columns)")
    }
}

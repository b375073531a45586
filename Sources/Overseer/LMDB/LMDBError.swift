import CLMDB
import Foundation

/// An error returned by the LMDB C library, with the operation and path it concerns.
struct LMDBError: Error, Sendable, CustomStringConvertible {
    let code: Int32
    let operation: String
    let path: String

    var description: String { "\(path): \(message)" }

    /// The message without the path.
    var message: String {
        let text = String(cString: mdb_strerror(code))
        return "\(operation) failed: \(text) (\(code))"
    }

    var isMapFull: Bool { code == MDB_MAP_FULL }
    var isMapResized: Bool { code == MDB_MAP_RESIZED }
    var isNotFound: Bool { code == MDB_NOTFOUND }
    /// MDB_INVALID: "File is not an LMDB file", or MDB_VERSION_MISMATCH.
    var isNotLMDB: Bool { code == MDB_INVALID || code == MDB_VERSION_MISMATCH }
    var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }
}

@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String, path: String) throws(LMDBError) {
    if rc != MDB_SUCCESS { throw LMDBError(code: rc, operation: operation(), path: path) }
}

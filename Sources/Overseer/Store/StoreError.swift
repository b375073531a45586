import Foundation

/// An error from opening, reading or writing a store. Each names the store's path (never a
/// password) and says what to do next where there is something to do.
public struct StoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable {
        /// The path exists but is not an Overseer store (a plain file, or an LMDB file of someone else's).
        case notAStore
        /// The data file is damaged or is not an LMDB file at all.
        case corrupt
        /// The store was written by a newer Overseer.
        case newerFormat
        /// The directory or files cannot be created or written (permissions, read-only media).
        case unwritable
        /// The disk is full, or the map reached its configured maximum.
        case full
        /// The store was opened read-only and a write was attempted.
        case readOnly
        /// A fact or an argument was refused before anything was written.
        case invalid
        /// The store's server cannot be reached (a lost connection that did not come back).
        case unavailable
        /// Anything else from the storage layer.
        case io
    }

    public let code: Code
    public let path: String
    public let message: String

    public init(_ code: Code, path: String, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

extension StoreError {
    static func from(_ error: LMDBError) -> StoreError {
        if error.isNotLMDB {
            return StoreError(.corrupt, path: error.path, "the data file is not a valid LMDB file or is damaged (\(String(cString: mdb_strerror_safe(error.code))))")
        }
        if error.code == EACCES || error.code == EROFS || error.code == EPERM {
            return StoreError(.unwritable, path: error.path, "\(error.operation): permission denied or read-only file system (\(String(cString: strerror(error.code))))")
        }
        // LMDB reports a short write (what a full file system gives) as EIO: tell it apart.
        if error.isNoSpace || (error.code == EIO && StoreError.diskIsFull(error.path)) {
            return StoreError(.full, path: error.path, "\(error.operation): no space left on device; nothing was written. Free some space and retry.")
        }
        if error.isMapFull {
            return StoreError(.full, path: error.path, "the store reached its maximum map size; nothing was written. Raise StoreOptions.maximumMapSize.")
        }
        if error.code == MDB_CORRUPTED || error.code == MDB_PAGE_NOTFOUND {
            return StoreError(.corrupt, path: error.path, "the data file is damaged (\(error.message))")
        }
        return StoreError(.io, path: error.path, error.message)
    }
}

import CLMDB

extension StoreError {
    /// Whether the file system holding `path` has (almost) no space left for LMDB's next pages.
    static func diskIsFull(_ path: String) -> Bool {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { return false }
        return UInt64(fs.f_bavail) * UInt64(fs.f_frsize) < 1 << 20
    }
}

func mdb_strerror_safe(_ code: Int32) -> UnsafeMutablePointer<CChar> { mdb_strerror(code) }

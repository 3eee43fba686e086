namespace GpuPool.Coordination.Embedded;

/// <summary>
/// The embedded store's file: held open and locked (<see cref="FileShare.None"/>, an exclusive <c>flock</c> on
/// Linux, unless DOTNET_SYSTEM_IO_DISABLEFILELOCKING turns .NET's locking off) for the store's lifetime,
/// appended one record per commit, and rewritten as a snapshot when it grows.
/// Not thread-safe: the store calls it under its lock.
/// </summary>
internal sealed class StoreFile : IDisposable
{
    private readonly bool _flushToDisk;
    private readonly long _compactionThreshold;
    private readonly RecordWriter _writer = new();
    private FileStream _stream;

    /// <summary>The end of the last whole record: where the next one goes.</summary>
    private long _length;

    private long _compactAt;

    /// <summary>A write failed and the file could not be cut back to its last whole record: nothing more is written.</summary>
    private Exception? _failure;

    private StoreFile(string path, FileStream stream, EmbeddedStoreOptions options)
    {
        Path = path;
        _stream = stream;
        _flushToDisk = options.FlushToDisk;
        _compactionThreshold = options.CompactionThreshold;
    }

    public string Path { get; }

    /// <summary>Where a snapshot is written before it is renamed over <see cref="Path"/>.</summary>
    public string CompactionPath => Path + ".compact";

    public bool CompactionDue => _length >= _compactAt && _failure is null;

    /// <summary>Opens and locks the file, creating it (empty) and its folder when missing.</summary>
    public static StoreFile Open(EmbeddedStoreOptions options)
    {
        var path = System.IO.Path.GetFullPath(options.Path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        FileStream stream;
        try
        {
            // Unbuffered: each record goes to the OS in one write when appended.
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
        }
        catch (IOException ex) when (IsLockConflict(ex))
        {
            throw new EmbeddedStoreInUseException(path, ex);
        }

        var file = new StoreFile(path, stream, options);
        try
        {
            // A compaction cut short leaves its snapshot behind; the store file itself is whole. We hold the
            // lock, so no other store is writing it.
            File.Delete(file.CompactionPath);
        }
        catch
        {
            file.Dispose();
            throw;
        }

        return file;
    }

    public byte[] ReadAll()
    {
        var length = _stream.Length;
        if (length > Array.MaxLength)
        {
            throw new EmbeddedStoreCorruptException(Path, 0, $"it holds {length} bytes, more than the store reads");
        }

        var bytes = new byte[length];
        _stream.Position = 0;
        _stream.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>Marks where recovery stopped: drops what follows (a torn record) and appends from there.</summary>
    public void Recovered(long length, long snapshotLength)
    {
        if (_stream.Length != length)
        {
            _stream.SetLength(length);
            _stream.Flush(flushToDisk: true);
        }

        _stream.Position = length;
        _length = length;
        _compactAt = Math.Max(_compactionThreshold, 2 * snapshotLength);
    }

    /// <summary>Starts a record to append; write its fields to the returned writer, then call <see cref="Append"/>.</summary>
    public RecordWriter Begin(RecordType type)
    {
        if (_failure is not null)
        {
            throw new StoreUnavailableException($"the embedded store stopped writing to '{Path}' after a write failed ({_failure.Message}); restart it", _failure);
        }

        _writer.Clear();
        _writer.Begin(type);
        return _writer;
    }

    /// <summary>Writes the record begun with <see cref="Begin"/>; it has reached the OS (or the disk, with <see cref="EmbeddedStoreOptions.FlushToDisk"/>) when this returns.</summary>
    public void Append()
    {
        _writer.End();
        try
        {
            _stream.Write(_writer.Written);
            if (_flushToDisk)
            {
                _stream.Flush(flushToDisk: true);
            }

            _length += _writer.Written.Length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The caller applies nothing; a part of the record that did land must not stay in front of the
            // next one, or the next open would find damage in the middle of the file.
            try
            {
                _stream.SetLength(_length);
                _stream.Position = _length;
            }
            catch (Exception truncateError) when (truncateError is IOException or UnauthorizedAccessException)
            {
                _failure = ex;
            }

            throw new StoreUnavailableException($"the embedded store could not write to '{Path}': {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Replaces the file with a snapshot of the given state: written to <see cref="CompactionPath"/>, fsynced,
    /// then renamed over the file, so a crash at any point leaves either the old file or the new one, whole.
    /// </summary>
    public void WriteSnapshot(long revision, IReadOnlyCollection<(string Id, TimeSpan Ttl)> sessions, IReadOnlyCollection<KvEntry> entries)
    {
        FileStream? next = null;
        try
        {
            // Locked like the store file: once renamed it is the store file, and the lock goes with it.
            next = new FileStream(CompactionPath, FileMode.Create, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
            _writer.Clear();
            _writer.WriteRaw(StoreFormat.Magic);
            _writer.Begin(RecordType.Checkpoint);
            _writer.WriteInt64(revision);
            _writer.WriteInt32(sessions.Count);
            _writer.WriteInt32(entries.Count);
            _writer.End();
            foreach (var (id, ttl) in sessions)
            {
                _writer.Begin(RecordType.SessionCreate);
                _writer.WriteString(id);
                _writer.WriteInt64(ttl.Ticks);
                _writer.End();
                FlushIfLarge(next);
            }

            foreach (var entry in entries)
            {
                _writer.Begin(RecordType.EntryState);
                _writer.WriteString(entry.Key);
                _writer.WriteBytes(entry.Value.Span);
                _writer.WriteInt64(entry.CreateRevision);
                _writer.WriteInt64(entry.ModRevision);
                _writer.WriteNullableString(entry.SessionId);
                _writer.End();
                FlushIfLarge(next);
            }

            next.Write(_writer.Written);
            _writer.Clear();

            // Always fsynced, whatever FlushToDisk says: the rename must never name a file whose contents are
            // not on disk yet. The rename itself is made durable by the next fsync of the file on a journaling
            // file system (ext4, xfs), which is all FlushToDisk promises.
            next.Flush(flushToDisk: true);
            File.Move(CompactionPath, Path, overwrite: true);
        }
        catch
        {
            next?.Dispose();
            TryDelete(CompactionPath);
            throw;
        }

        // The old file's lock is held until the new one is in place: nobody can open the path unlocked meanwhile.
        var old = _stream;
        _stream = next;
        _length = next.Length;
        _compactAt = Math.Max(_compactionThreshold, 2 * _length);
        old.Dispose();
    }

    /// <summary>Rewrites the file as a snapshot. A failed compaction is not a failed commit: the old file is still whole, and the next try waits until it has doubled.</summary>
    public void Compact(long revision, IReadOnlyCollection<(string Id, TimeSpan Ttl)> sessions, IReadOnlyCollection<KvEntry> entries)
    {
        try
        {
            WriteSnapshot(revision, sessions, entries);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _compactAt = 2 * _length;
        }
    }

    public void Dispose() => _stream.Dispose();

    private void FlushIfLarge(FileStream stream)
    {
        if (_writer.Written.Length >= 1 << 20)
        {
            stream.Write(_writer.Written);
            _writer.Clear();
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Removed on the next open.
        }
    }

    /// <summary>EWOULDBLOCK from flock (Linux 11, macOS 35), or Windows' sharing violation.</summary>
    private static bool IsLockConflict(IOException ex) => ex.HResult is 11 or 35 or unchecked((int)0x80070020);
}

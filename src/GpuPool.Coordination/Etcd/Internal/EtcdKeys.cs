using System.Text;
using Google.Protobuf;

namespace GpuPool.Coordination.Etcd.Internal;

/// <summary>Maps the store's keys to etcd's: UTF-8, behind the configured prefix, and prefixes to etcd's [key, range_end) ranges.</summary>
internal sealed class EtcdKeys(string keyPrefix)
{
    private readonly byte[] _prefix = Encoding.UTF8.GetBytes(keyPrefix);

    /// <summary>etcd's "every key from here on" range end, and the smallest key.</summary>
    private static readonly ByteString Zero = ByteString.CopyFrom(0);

    public ByteString ToEtcd(string key)
    {
        var bytes = new byte[_prefix.Length + Encoding.UTF8.GetByteCount(key)];
        _prefix.CopyTo(bytes, 0);
        Encoding.UTF8.GetBytes(key, bytes.AsSpan(_prefix.Length));
        return UnsafeByteOperations.UnsafeWrap(bytes);
    }

    /// <summary>The store's key for an etcd key, or null for a key outside the prefix (never returned by a ranged read).</summary>
    public string? FromEtcd(ByteString key)
    {
        var span = key.Span;
        return span.StartsWith(_prefix) ? Encoding.UTF8.GetString(span[_prefix.Length..]) : null;
    }

    /// <summary>The etcd range holding every key that starts with <paramref name="prefix"/>.</summary>
    public (ByteString Key, ByteString RangeEnd) Range(string prefix)
    {
        var start = ToEtcd(prefix);
        return start.IsEmpty ? (Zero, Zero) : (start, RangeEnd(start.Span));
    }

    /// <summary>Any one etcd key: a read of it returns the store's revision in its header.</summary>
    public ByteString Probe => _prefix.Length > 0 ? ToEtcd("") : Zero;

    /// <summary>The key just past every key that starts with <paramref name="start"/>: drop trailing 0xff bytes, add one to the last.</summary>
    internal static ByteString RangeEnd(ReadOnlySpan<byte> start)
    {
        for (var i = start.Length - 1; i >= 0; i--)
        {
            if (start[i] < 0xff)
            {
                var end = start[..(i + 1)].ToArray();
                end[i]++;
                return UnsafeByteOperations.UnsafeWrap(end);
            }
        }

        // Only 0xff bytes: every key from the start on.
        return Zero;
    }
}

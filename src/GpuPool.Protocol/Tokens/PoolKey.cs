using System.Security.Cryptography;
using System.Text;

namespace GpuPool.Protocol.Tokens;

/// <summary>
/// The pool's public signing key as the store holds it (<see cref="V1.StoreKeys.SchedulerPublicKey"/>, PEM): written
/// by the first scheduler replica, checked by every later replica and every broker at start, so that a daemon given
/// another pool's key is refused at once instead of taking placements whose sessions all fail.
/// </summary>
public static class PoolKey
{
    /// <summary>The key's identity for comparisons: its SubjectPublicKeyInfo bytes.</summary>
    public static byte[] Fingerprint(ECDsa key) => SHA256.HashData(key.ExportSubjectPublicKeyInfo());

    /// <summary>A short hex form of the fingerprint, for messages.</summary>
    public static string Describe(ECDsa key) => Convert.ToHexStringLower(Fingerprint(key))[..16];

    /// <summary>The key in the stored PEM, or null when <paramref name="pem"/> is not one.</summary>
    public static ECDsa? Parse(ReadOnlySpan<byte> pem)
    {
        try
        {
            return LeaseToken.ImportPem(Encoding.ASCII.GetString(pem));
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            return null;
        }
    }

    public static byte[] Encode(ECDsa key) => Encoding.ASCII.GetBytes(LeaseToken.ExportPublicPem(key));

    /// <summary>Why <paramref name="ours"/> is not the pool's key held in <paramref name="stored"/>; null when it is.</summary>
    public static string? Mismatch(ECDsa ours, ReadOnlySpan<byte> stored, string who)
    {
        using var pool = Parse(stored);
        if (pool is null)
        {
            return $"the store's record of the pool's public key is not a PEM key; {who} cannot check its key against it";
        }

        return Fingerprint(ours).AsSpan().SequenceEqual(Fingerprint(pool))
            ? null
            : $"{who}'s key (fingerprint {Describe(ours)}) is not this pool's signing key (fingerprint {Describe(pool)}, in the store): give it the pool's key (`gpupool scheduler export-key --public` on a scheduler host)";
    }
}

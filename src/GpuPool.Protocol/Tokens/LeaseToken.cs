using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using GpuPool.Protocol.V1;
using GpuPool.Protocol.Errors;

namespace GpuPool.Protocol.Tokens;

/// <summary>What a lease token grants: one lease's slice of one device on one broker, until a time.</summary>
public sealed record LeaseClaims(
    [property: JsonPropertyName("lid")] string LeaseId,
    [property: JsonPropertyName("ten")] string Tenant,
    [property: JsonPropertyName("brk")] string BrokerId,
    [property: JsonPropertyName("dev")] uint DeviceIndex,
    [property: JsonPropertyName("mem")] ulong MemoryBytes,
    [property: JsonPropertyName("shr")] uint ComputeShare,
    [property: JsonPropertyName("exp")] long ExpiresUnixMs)
{
    /// <summary>How the share holds: 0 work-conserving, 1 capped (<c>ShareMode</c> of lease.proto); absent from older tokens, so 0.</summary>
    [JsonPropertyName("smd")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public uint ShareMode { get; init; }
}

[JsonSerializable(typeof(LeaseClaims))]
internal sealed partial class TokenJsonContext : JsonSerializerContext;

/// <summary>
/// Compact signed tokens: base64url(claims JSON) "." base64url(ECDSA P-256 SHA-256 signature).
/// The scheduler signs with its private key; brokers verify with its public key.
/// </summary>
public static class LeaseToken
{
    public static string Sign(LeaseClaims claims, ECDsa privateKey)
    {
        var payload = JsonSerializer.SerializeToUtf8Bytes(claims, TokenJsonContext.Default.LeaseClaims);
        var signature = privateKey.SignData(payload, HashAlgorithmName.SHA256);
        return Base64Url.EncodeToString(payload) + "." + Base64Url.EncodeToString(signature);
    }

    /// <summary>Checks the signature and the expiry; throws Unauthenticated with the reason otherwise.</summary>
    public static LeaseClaims Verify(string? token, ECDsa publicKey, DateTimeOffset now)
    {
        if (string.IsNullOrEmpty(token))
        {
            throw new GpuPoolException(ErrorCode.Unauthenticated, "no lease token: open the session with the token the scheduler returned for the lease");
        }

        var dot = token.IndexOf('.');
        byte[] payload, signature;
        try
        {
            if (dot <= 0 || dot == token.Length - 1)
            {
                throw new FormatException();
            }

            payload = Base64Url.DecodeFromChars(token.AsSpan(0, dot));
            signature = Base64Url.DecodeFromChars(token.AsSpan(dot + 1));
        }
        catch (FormatException)
        {
            throw new GpuPoolException(ErrorCode.Unauthenticated, "malformed lease token: expected two base64url parts separated by '.'");
        }

        if (!publicKey.VerifyData(payload, signature, HashAlgorithmName.SHA256))
        {
            throw new GpuPoolException(ErrorCode.Unauthenticated, "lease token signature does not verify: it was not issued by this pool's scheduler");
        }

        LeaseClaims? claims;
        try
        {
            claims = JsonSerializer.Deserialize(payload, TokenJsonContext.Default.LeaseClaims);
        }
        catch (JsonException)
        {
            claims = null;
        }

        if (claims is null || string.IsNullOrEmpty(claims.LeaseId))
        {
            throw new GpuPoolException(ErrorCode.Unauthenticated, "lease token claims are malformed");
        }

        if (claims.ExpiresUnixMs <= now.ToUnixTimeMilliseconds())
        {
            throw new GpuPoolException(ErrorCode.Unauthenticated, $"lease token for lease {claims.LeaseId} expired at {DateTimeOffset.FromUnixTimeMilliseconds(Math.Max(0, claims.ExpiresUnixMs)):O}: renew the lease to get a fresh token");
        }

        return claims;
    }

    /// <summary>A new P-256 key pair.</summary>
    public static ECDsa CreateKey() => ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public static string ExportPublicPem(ECDsa key) => key.ExportSubjectPublicKeyInfoPem();

    public static ECDsa ImportPem(string pem)
    {
        var key = ECDsa.Create();
        key.ImportFromPem(pem);
        return key;
    }

    /// <summary>
    /// The public half of the key in <paramref name="pem"/> (public or private), for a verifier that must hold no more:
    /// <paramref name="wasPrivate"/> says whether the PEM held the private key too, which the caller warns about.
    /// </summary>
    public static ECDsa ImportPublicPem(string pem, out bool wasPrivate)
    {
        using var key = ImportPem(pem);
        wasPrivate = pem.Contains("PRIVATE KEY-----", StringComparison.Ordinal);
        var publicHalf = ECDsa.Create();
        publicHalf.ImportParameters(key.ExportParameters(includePrivateParameters: false));
        return publicHalf;
    }

    /// <summary>
    /// Loads the key pair kept at <paramref name="path"/> (PKCS#8 PEM), creating it with owner-only
    /// permissions on first use.
    /// </summary>
    public static ECDsa LoadOrCreatePrivateKey(string path)
    {
        if (File.Exists(path))
        {
            return ImportPem(File.ReadAllText(path, Encoding.ASCII));
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var key = CreateKey();
        var pem = key.ExportPkcs8PrivateKeyPem();
        var temp = path + ".tmp";

        // A stale temp file would keep its old permissions; the key must be created owner-only.
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var stream = new FileStream(temp, options))
        {
            stream.Write(Encoding.ASCII.GetBytes(pem));
        }

        File.Move(temp, path, overwrite: true);
        return key;
    }
}

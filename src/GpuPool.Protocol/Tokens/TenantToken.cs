using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace GpuPool.Protocol.Tokens;

/// <summary>What a tenant token says: whose it is, its id (the key of its allow-list record), its role and when it was issued.</summary>
public sealed record TenantClaims(
    [property: JsonPropertyName("ten")] string Tenant,
    [property: JsonPropertyName("tid")] string TokenId,
    [property: JsonPropertyName("rol")] string Role,
    [property: JsonPropertyName("iat")] long IssuedUnixMs);

/// <summary>
/// Who a scheduler replica forwards a lease call for: the caller's name and role as the replica verified them, how
/// (for the audit), the peer the call came from, and until when the assertion holds.
/// </summary>
public sealed record CallerAssertion(
    [property: JsonPropertyName("nam")] string Name,
    [property: JsonPropertyName("rol")] string Role,
    [property: JsonPropertyName("via")] string Via,
    [property: JsonPropertyName("peer")] string Peer,
    [property: JsonPropertyName("exp")] long ExpiresUnixMs);

[JsonSerializable(typeof(TenantClaims))]
[JsonSerializable(typeof(CallerAssertion))]
internal sealed partial class TenantTokenJsonContext : JsonSerializerContext;

/// <summary>
/// Tenant tokens, "gpt1." base64url(claims JSON) "." base64url(signature), and the assertions a standby forwards with,
/// "gpa1." in the same layout. Both are signed with the schedulers' shared ECDSA P-256 key over the prefix and the
/// claims, so neither can be passed off as the other or as a lease token. A tenant token never expires by itself: it
/// is valid while its record exists in the store (the scheduler checks), so it is revoked by deleting the record.
/// </summary>
public static class TenantToken
{
    /// <summary>What every tenant token starts with: the admin credential never does.</summary>
    public const string Prefix = "gpt1.";

    /// <summary>What every forwarded caller assertion starts with.</summary>
    public const string AssertionPrefix = "gpa1.";

    public const string TenantRole = "tenant";
    public const string AdminRole = "admin";

    /// <summary>The longest token accepted: claims are a few short fields, so anything longer is not one of ours.</summary>
    public const int MaxLength = 2048;

    /// <summary>A new random token id ("tk-" and 16 hex digits).</summary>
    public static string NewId() => "tk-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    public static string Sign(TenantClaims claims, ECDsa privateKey)
        => Seal(Prefix, JsonSerializer.SerializeToUtf8Bytes(claims, TenantTokenJsonContext.Default.TenantClaims), privateKey);

    public static string SignAssertion(CallerAssertion assertion, ECDsa privateKey)
        => Seal(AssertionPrefix, JsonSerializer.SerializeToUtf8Bytes(assertion, TenantTokenJsonContext.Default.CallerAssertion), privateKey);

    /// <summary>
    /// What a tenant token says, without checking its signature: for a client to know whom its own token names (the
    /// scheduler always verifies). False when it is not a tenant token.
    /// </summary>
    public static bool TryReadUnverified(string token, out TenantClaims? claims)
    {
        claims = null;
        if (token.Length > MaxLength || !token.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var body = token.AsSpan(Prefix.Length);
        var dot = body.IndexOf('.');
        try
        {
            claims = JsonSerializer.Deserialize(Base64Url.DecodeFromChars(dot < 0 ? body : body[..dot]), TenantTokenJsonContext.Default.TenantClaims);
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
        }

        return claims is not null;
    }

    /// <summary>Checks the form and the signature; false with a sentence saying why otherwise. Whether it is revoked is the caller's to check.</summary>
    public static bool TryVerify(string token, ECDsa publicKey, out TenantClaims? claims, out string error)
    {
        claims = null;
        if (!TryOpen(token, Prefix, publicKey, "tenant token", out var payload, out error))
        {
            return false;
        }

        try
        {
            claims = JsonSerializer.Deserialize(payload, TenantTokenJsonContext.Default.TenantClaims);
        }
        catch (JsonException)
        {
        }

        if (claims is null || string.IsNullOrEmpty(claims.Tenant) || string.IsNullOrEmpty(claims.TokenId) || claims.Role is not (TenantRole or AdminRole))
        {
            claims = null;
            error = "the tenant token's claims are malformed";
            return false;
        }

        return true;
    }

    /// <summary>Checks an assertion's form, signature and expiry; false with a sentence saying why otherwise.</summary>
    public static bool TryVerifyAssertion(string assertion, ECDsa publicKey, DateTimeOffset now, out CallerAssertion? claims, out string error)
    {
        claims = null;
        if (!TryOpen(assertion, AssertionPrefix, publicKey, "forwarded caller assertion", out var payload, out error))
        {
            return false;
        }

        try
        {
            claims = JsonSerializer.Deserialize(payload, TenantTokenJsonContext.Default.CallerAssertion);
        }
        catch (JsonException)
        {
        }

        if (claims is null || string.IsNullOrEmpty(claims.Name) || string.IsNullOrEmpty(claims.Role))
        {
            claims = null;
            error = "the forwarded caller assertion's claims are malformed";
            return false;
        }

        if (claims.ExpiresUnixMs <= now.ToUnixTimeMilliseconds())
        {
            claims = null;
            error = "the forwarded caller assertion has expired (are the replicas' clocks apart?)";
            return false;
        }

        return true;
    }

    private static string Seal(string prefix, byte[] payload, ECDsa privateKey)
    {
        var signature = privateKey.SignData(Signed(prefix, payload), HashAlgorithmName.SHA256);
        return prefix + Base64Url.EncodeToString(payload) + "." + Base64Url.EncodeToString(signature);
    }

    private static bool TryOpen(string token, string prefix, ECDsa publicKey, string what, out byte[] payload, out string error)
    {
        payload = [];
        error = "";
        if (token.Length > MaxLength || !token.StartsWith(prefix, StringComparison.Ordinal))
        {
            error = $"malformed {what}: expected {prefix}PAYLOAD.SIGNATURE of at most {MaxLength} characters";
            return false;
        }

        var body = token.AsSpan(prefix.Length);
        var dot = body.IndexOf('.');
        byte[] signature;
        try
        {
            if (dot <= 0 || dot == body.Length - 1)
            {
                throw new FormatException();
            }

            payload = Base64Url.DecodeFromChars(body[..dot]);
            signature = Base64Url.DecodeFromChars(body[(dot + 1)..]);
        }
        catch (FormatException)
        {
            error = $"malformed {what}: expected {prefix}PAYLOAD.SIGNATURE in base64url";
            return false;
        }

        if (!publicKey.VerifyData(Signed(prefix, payload), signature, HashAlgorithmName.SHA256))
        {
            error = $"the {what}'s signature does not verify: it was not issued by this pool's schedulers";
            return false;
        }

        return true;
    }

    /// <summary>The bytes signed: the prefix (which kind of token) and then the claims.</summary>
    private static byte[] Signed(string prefix, byte[] payload)
    {
        var data = new byte[prefix.Length + payload.Length];
        Encoding.ASCII.GetBytes(prefix, data);
        payload.CopyTo(data, prefix.Length);
        return data;
    }
}

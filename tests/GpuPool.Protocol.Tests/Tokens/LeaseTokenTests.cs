using System.Buffers.Text;
using System.Security.Cryptography;
using CsCheck;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Tests.Tokens;

public sealed class LeaseTokenTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2025, 6, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly ECDsa Key = LeaseToken.CreateKey();

    private readonly LeaseClaims _claims = new("lease-1", "team-a", "broker-7", 2, 8UL << 30, 50, Now.AddMinutes(5).ToUnixTimeMilliseconds());
    private readonly string _dir = Directory.CreateTempSubdirectory("gpupool-token-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_signed_token_verifies_to_the_claims_it_was_signed_with()
    {
        var token = LeaseToken.Sign(_claims, Key);

        Assert.Equal(_claims, LeaseToken.Verify(token, Key, Now));
    }

    [Fact]
    public void A_token_verifies_with_the_public_key_exported_as_PEM()
    {
        var token = LeaseToken.Sign(_claims, Key);
        using var publicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(Key));

        Assert.Equal(_claims, LeaseToken.Verify(token, publicKey, Now));
    }

    [Fact]
    public void Any_flipped_byte_in_the_claims_fails_with_Unauthenticated()
    {
        var (payload, signature) = Parts(LeaseToken.Sign(_claims, Key));

        Gen.Select(Gen.Int[0, payload.Length - 1], Gen.Byte[1, 255]).Sample((at, mask) =>
        {
            var tampered = (byte[])payload.Clone();
            tampered[at] ^= mask;

            AssertUnauthenticated(Join(tampered, signature));
        }, iter: 200);
    }

    [Fact]
    public void Any_flipped_byte_in_the_signature_fails_with_Unauthenticated()
    {
        var (payload, signature) = Parts(LeaseToken.Sign(_claims, Key));

        Gen.Select(Gen.Int[0, signature.Length - 1], Gen.Byte[1, 255]).Sample((at, mask) =>
        {
            var tampered = (byte[])signature.Clone();
            tampered[at] ^= mask;

            AssertUnauthenticated(Join(payload, tampered));
        }, iter: 200);
    }

    [Fact]
    public void A_token_signed_by_another_key_fails_as_not_issued_by_this_pool()
    {
        using var other = LeaseToken.CreateKey();
        var token = LeaseToken.Sign(_claims, other);

        var ex = AssertUnauthenticated(token);

        Assert.Contains("does not verify", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3_600_000)]
    public void A_token_at_or_past_its_expiry_fails_as_expired(long millisecondsPastExpiry)
    {
        var token = LeaseToken.Sign(_claims, Key);
        var now = DateTimeOffset.FromUnixTimeMilliseconds(_claims.ExpiresUnixMs + millisecondsPastExpiry);

        var ex = Assert.Throws<GpuPoolException>(() => LeaseToken.Verify(token, Key, now));

        Assert.Equal(ErrorCode.Unauthenticated, ex.Code);
        Assert.Contains("expired", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_token_one_millisecond_before_its_expiry_verifies()
    {
        var token = LeaseToken.Sign(_claims, Key);

        var claims = LeaseToken.Verify(token, Key, DateTimeOffset.FromUnixTimeMilliseconds(_claims.ExpiresUnixMs - 1));

        Assert.Equal(_claims, claims);
    }

    [Theory]
    [InlineData("no-dot-at-all")]
    [InlineData(".c2ln")]
    [InlineData("eyJsaWQiOiJ4In0.")]
    [InlineData("not*base64.c2ln")]
    [InlineData("eyJsaWQiOiJ4In0.sig!nature")]
    public void A_token_that_is_not_two_base64url_parts_fails_as_malformed(string token)
    {
        var ex = AssertUnauthenticated(token);

        Assert.Contains("malformed", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void A_missing_token_fails_with_Unauthenticated(string? token)
    {
        AssertUnauthenticated(token);
    }

    [Fact]
    public void LoadOrCreatePrivateKey_creates_an_owner_only_key_file_on_first_use()
    {
        var path = Path.Combine(_dir, "keys", "scheduler.pem");

        using var key = LeaseToken.LoadOrCreatePrivateKey(path);

        Assert.True(File.Exists(path));
        Assert.False(File.Exists(path + ".tmp"));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }
    }

    [Fact]
    public void LoadOrCreatePrivateKey_loads_the_same_key_on_later_use()
    {
        var path = Path.Combine(_dir, "scheduler.pem");
        using var created = LeaseToken.LoadOrCreatePrivateKey(path);

        using var loaded = LeaseToken.LoadOrCreatePrivateKey(path);

        Assert.Equal(created.ExportSubjectPublicKeyInfo(), loaded.ExportSubjectPublicKeyInfo());
        Assert.Equal(_claims, LeaseToken.Verify(LeaseToken.Sign(_claims, loaded), created, Now));
    }

    private static GpuPoolException AssertUnauthenticated(string? token)
    {
        var ex = Assert.Throws<GpuPoolException>(() => LeaseToken.Verify(token, Key, Now));
        Assert.Equal(ErrorCode.Unauthenticated, ex.Code);
        return ex;
    }

    private static (byte[] Payload, byte[] Signature) Parts(string token)
    {
        var dot = token.IndexOf('.', StringComparison.Ordinal);
        return (Base64Url.DecodeFromChars(token.AsSpan(0, dot)), Base64Url.DecodeFromChars(token.AsSpan(dot + 1)));
    }

    [Fact]
    public void A_verifier_given_the_private_key_keeps_only_its_public_half_and_says_so()
    {
        using var pair = LeaseToken.CreateKey();
        var token = LeaseToken.Sign(_claims, pair);

        using var fromPrivate = LeaseToken.ImportPublicPem(pair.ExportPkcs8PrivateKeyPem(), out var wasPrivate);
        using var fromPublic = LeaseToken.ImportPublicPem(LeaseToken.ExportPublicPem(pair), out var publicWasPrivate);

        Assert.True(wasPrivate);
        Assert.False(publicWasPrivate);
        Assert.Equal(_claims, LeaseToken.Verify(token, fromPrivate, Now));
        Assert.Equal(_claims, LeaseToken.Verify(token, fromPublic, Now));
        Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => fromPrivate.ExportParameters(includePrivateParameters: true));
        Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => LeaseToken.Sign(_claims, fromPrivate));
    }

    private static string Join(byte[] payload, byte[] signature) => Base64Url.EncodeToString(payload) + "." + Base64Url.EncodeToString(signature);
}

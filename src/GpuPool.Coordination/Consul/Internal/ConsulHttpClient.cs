using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace GpuPool.Coordination.Consul.Internal;

/// <summary>An answer from Consul: its status, body, and <c>X-Consul-Index</c> when it carried one.</summary>
internal readonly record struct ConsulResponse(HttpStatusCode Status, byte[] Body, long? Index)
{
    public bool IsSuccess => (int)Status is >= 200 and < 300;

    public string BodyText(int max = 300)
    {
        var text = Encoding.UTF8.GetString(Body).Trim();
        return text.Length <= max ? text : text[..max] + "…";
    }
}

/// <summary>
/// A small typed client for the Consul HTTP API endpoints the store uses, on <see cref="HttpClient"/> and
/// source-generated System.Text.Json. A connection failure, a timeout, a 5xx or a 429 becomes a
/// <see cref="StoreUnavailableException"/> naming the address; other answers go back to the caller to judge.
/// </summary>
internal sealed class ConsulHttpClient : IDisposable
{
    private const string JsonMediaType = "application/json";

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly string? _token;
    private readonly string? _datacenter;

    public ConsulHttpClient(ConsulStoreOptions options, HttpClient? httpClient = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Address = options.ResolveAddress();
        RequestTimeout = options.RequestTimeout;
        _token = options.ResolveToken();
        _datacenter = string.IsNullOrWhiteSpace(options.Datacenter) ? null : options.Datacenter;
        if (httpClient is null)
        {
            // Per-call timeouts are ours (a blocking query may wait minutes); the connect timeout keeps an
            // address that drops packets from holding a call past the request timeout.
            var handler = new SocketsHttpHandler
            {
                ConnectTimeout = options.RequestTimeout,
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            };
            _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
            _ownsHttp = true;
        }
        else
        {
            _http = httpClient;
        }
    }

    /// <summary>The agent's address, as error messages name it.</summary>
    public Uri Address { get; }

    public TimeSpan RequestTimeout { get; }

    /// <summary>One key, or null when it does not exist.</summary>
    public async Task<ConsulKvPair?> GetKeyAsync(string key, CancellationToken cancellationToken)
    {
        var response = await SendAsync(HttpMethod.Get, KvPath(key), WithDatacenter(null), null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.Status == HttpStatusCode.NotFound)
        {
            return null;
        }

        EnsureSuccess(response, "GET", "/v1/kv/" + key);
        var entries = Parse(response, ConsulJsonContext.Default.ListConsulKvPair) ?? [];
        return entries.FirstOrDefault(e => e.Key == key);
    }

    /// <summary>
    /// Every entry under <paramref name="prefix"/> and the listing's <c>X-Consul-Index</c>. With
    /// <paramref name="index"/> above 0 this is a blocking query: it answers when the prefix changes after that
    /// index, or after <paramref name="wait"/> (plus Consul's jitter of up to wait/16).
    /// </summary>
    public async Task<(List<ConsulKvPair> Entries, long Index)> ListAsync(string prefix, long index, TimeSpan wait, CancellationToken cancellationToken)
    {
        var query = "recurse";
        var timeout = RequestTimeout;
        if (index > 0)
        {
            query += "&index=" + index.ToString(CultureInfo.InvariantCulture) + "&wait=" + GoDuration.Format(wait);
            timeout = wait + wait / 16 + RequestTimeout;
        }

        var response = await SendAsync(HttpMethod.Get, KvPath(prefix), WithDatacenter(query), null, timeout, cancellationToken).ConfigureAwait(false);
        if (response.Status != HttpStatusCode.NotFound)
        {
            EnsureSuccess(response, "GET", "/v1/kv/" + prefix);
        }

        var listingIndex = response.Index ?? throw Unexpected(response, "GET", "/v1/kv/" + prefix, "no X-Consul-Index header");
        if (response.Status == HttpStatusCode.NotFound)
        {
            return ([], listingIndex);
        }

        return (Parse(response, ConsulJsonContext.Default.ListConsulKvPair) ?? [], listingIndex);
    }

    /// <summary>
    /// The KV store's index: the highest index of any KV write or delete. A key listing of the root with a
    /// separator answers it with a body of the top-level key names only.
    /// </summary>
    public async Task<long> GetKvIndexAsync(CancellationToken cancellationToken)
    {
        var response = await SendAsync(HttpMethod.Get, "/v1/kv/", WithDatacenter("keys&separator=%2F"), null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        EnsureSuccess(response, "GET", "/v1/kv/?keys");
        return response.Index ?? throw Unexpected(response, "GET", "/v1/kv/?keys", "no X-Consul-Index header");
    }

    /// <summary>Runs a transaction: the results when it was applied (200), the errors when it was rolled back (409).</summary>
    public async Task<ConsulTxnResponse> TxnAsync(IReadOnlyList<ConsulTxnOp> ops, CancellationToken cancellationToken)
    {
        var body = SerializeTxn(ops);
        var response = await SendAsync(HttpMethod.Put, "/v1/txn", WithDatacenter(null), body, RequestTimeout, cancellationToken).ConfigureAwait(false);
        switch (response.Status)
        {
            case HttpStatusCode.OK:
            case HttpStatusCode.Conflict:
                return Parse(response, ConsulJsonContext.Default.ConsulTxnResponse) ?? new ConsulTxnResponse();
            case HttpStatusCode.BadRequest:
            case HttpStatusCode.RequestEntityTooLarge:
                throw new ArgumentException($"consul at {Address} refused the transaction ({(int)response.Status}): {response.BodyText()}");
            default:
                EnsureSuccess(response, "PUT", "/v1/txn");
                throw Unexpected(response, "PUT", "/v1/txn", "an answer that is neither 200 nor 409");
        }
    }

    public async Task<string> CreateSessionAsync(ConsulSessionCreateRequest request, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(request, ConsulJsonContext.Default.ConsulSessionCreateRequest);
        var response = await SendAsync(HttpMethod.Put, "/v1/session/create", WithDatacenter(null), body, RequestTimeout, cancellationToken).ConfigureAwait(false);
        EnsureSuccess(response, "PUT", "/v1/session/create");
        var created = Parse(response, ConsulJsonContext.Default.ConsulSessionCreateResponse);
        return string.IsNullOrEmpty(created?.ID) ? throw Unexpected(response, "PUT", "/v1/session/create", "no session ID") : created.ID;
    }

    /// <summary>Renews a session; false when Consul no longer has it (404).</summary>
    public async Task<bool> RenewSessionAsync(string sessionId, CancellationToken cancellationToken)
    {
        var path = "/v1/session/renew/" + Uri.EscapeDataString(sessionId);
        var response = await SendAsync(HttpMethod.Put, path, WithDatacenter(null), null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.Status == HttpStatusCode.NotFound)
        {
            return false;
        }

        EnsureSuccess(response, "PUT", path);
        return true;
    }

    /// <summary>Ends a session. Consul answers 200 for an unknown one; with ACLs on, older servers answer 500 "Unknown session", also taken as done.</summary>
    public async Task DestroySessionAsync(string sessionId, CancellationToken cancellationToken)
    {
        var path = "/v1/session/destroy/" + Uri.EscapeDataString(sessionId);
        var response = await SendAsync(HttpMethod.Put, path, WithDatacenter(null), null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.Status == HttpStatusCode.InternalServerError && response.BodyText().Contains("Unknown session", StringComparison.OrdinalIgnoreCase))
        {
            return;
        }

        EnsureSuccess(response, "PUT", path);
    }

    /// <summary>Whether Consul has the session (<c>/v1/session/info</c> answers <c>[]</c> for one it does not).</summary>
    public async Task<bool> SessionExistsAsync(string sessionId, CancellationToken cancellationToken)
    {
        var path = "/v1/session/info/" + Uri.EscapeDataString(sessionId);
        var response = await SendAsync(HttpMethod.Get, path, WithDatacenter(null), null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.Status == HttpStatusCode.NotFound)
        {
            return false;
        }

        EnsureSuccess(response, "GET", path);
        return Parse(response, ConsulJsonContext.Default.ListConsulSessionInfo) is { Count: > 0 } sessions && sessions.Any(s => s.ID == sessionId);
    }

    /// <summary>Registers (or replaces, with its checks) a service instance on the agent.</summary>
    public async Task RegisterServiceAsync(ConsulServiceRegistration registration, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(registration, ConsulJsonContext.Default.ConsulServiceRegistration);
        const string path = "/v1/agent/service/register";
        var response = await SendAsync(HttpMethod.Put, path, "replace-existing-checks=true", body, RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.Status == HttpStatusCode.BadRequest)
        {
            throw new ArgumentException($"consul at {Address} refused the registration of service instance '{registration.ID}': {response.BodyText()}");
        }

        EnsureSuccess(response, "PUT", path);
    }

    /// <summary>
    /// Marks a TTL check passing; false when the agent has no such check: 404 on current Consul, a 500 saying the
    /// check "does not have associated TTL" on older versions.
    /// </summary>
    public async Task<bool> PassCheckAsync(string checkId, CancellationToken cancellationToken)
    {
        // Check ids are "service:{id}": the colon is a valid path character, the rest is escaped.
        var path = "/v1/agent/check/pass/" + Uri.EscapeDataString(checkId).Replace("%3A", ":", StringComparison.Ordinal);
        var response = await SendAsync(HttpMethod.Put, path, null, null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.Status == HttpStatusCode.NotFound || IsUnknownCheck(response))
        {
            return false;
        }

        EnsureSuccess(response, "PUT", path);
        return true;
    }

    /// <summary>Removes a service instance from the agent; an unknown one (404 on current Consul) is not an error.</summary>
    public async Task DeregisterServiceAsync(string serviceId, CancellationToken cancellationToken)
    {
        var path = "/v1/agent/service/deregister/" + Uri.EscapeDataString(serviceId);
        var response = await SendAsync(HttpMethod.Put, path, null, null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.Status == HttpStatusCode.NotFound)
        {
            return;
        }

        EnsureSuccess(response, "PUT", path);
    }

    /// <summary>The catalog's instances of a service, each with its node's and its own checks.</summary>
    public async Task<List<ConsulServiceEntry>> HealthServiceAsync(string serviceName, CancellationToken cancellationToken)
    {
        var path = "/v1/health/service/" + Uri.EscapeDataString(serviceName);
        var response = await SendAsync(HttpMethod.Get, path, WithDatacenter(null), null, RequestTimeout, cancellationToken).ConfigureAwait(false);
        EnsureSuccess(response, "GET", path);
        return Parse(response, ConsulJsonContext.Default.ListConsulServiceEntry) ?? [];
    }

    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    /// <summary>The request body of a transaction, as Consul's <c>/v1/txn</c> reads it.</summary>
    internal static byte[] SerializeTxn(IReadOnlyList<ConsulTxnOp> ops) =>
        JsonSerializer.SerializeToUtf8Bytes(ops as List<ConsulTxnOp> ?? [.. ops], ConsulJsonContext.Default.ListConsulTxnOp);

    /// <summary>The URL path of a key or prefix: every segment percent-encoded, the slashes kept.</summary>
    internal static string KvPath(string key)
    {
        var builder = new StringBuilder("/v1/kv/", 7 + key.Length + 16);
        var first = true;
        foreach (var segment in key.Split('/'))
        {
            if (!first)
            {
                builder.Append('/');
            }

            builder.Append(Uri.EscapeDataString(segment));
            first = false;
        }

        return builder.ToString();
    }

    private string? WithDatacenter(string? query) =>
        _datacenter is null ? query : (query is null ? "" : query + "&") + "dc=" + Uri.EscapeDataString(_datacenter);

    private async Task<ConsulResponse> SendAsync(HttpMethod method, string path, string? query, byte[]? body, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var uri = new Uri(Address, query is null ? path : path + "?" + query);
        using var request = new HttpRequestMessage(method, uri);
        if (_token is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Consul-Token", _token);
        }

        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(JsonMediaType);
        }

        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, timeoutSource.Token).ConfigureAwait(false);
            var bytes = await response.Content.ReadAsByteArrayAsync(timeoutSource.Token).ConfigureAwait(false);
            long? index = null;
            if (response.Headers.TryGetValues("X-Consul-Index", out var values)
                && ulong.TryParse(values.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
            {
                index = (long)Math.Min(parsed, long.MaxValue);
            }

            var result = new ConsulResponse(response.StatusCode, bytes, index);
            if (((int)response.StatusCode >= 500 && !IsUnknownCheck(result) && !IsUnknownSession(result)) || response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                throw new StoreUnavailableException($"consul at {Address} answered {method} {path} with {(int)response.StatusCode} {response.ReasonPhrase}: {result.BodyText()}");
            }

            return result;
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new StoreUnavailableException($"consul at {Address} did not answer {method} {path} within {timeout.TotalSeconds:0.###} s", ex);
        }
        catch (HttpRequestException ex)
        {
            throw new StoreUnavailableException($"consul at {Address} could not be reached ({method} {path}): {ex.Message}", ex);
        }
    }

    private static bool IsUnknownCheck(ConsulResponse response) =>
        response.Status == HttpStatusCode.InternalServerError
        && (response.BodyText().Contains("does not have associated TTL", StringComparison.Ordinal)
            || response.BodyText().Contains("Unknown check", StringComparison.OrdinalIgnoreCase));

    private static bool IsUnknownSession(ConsulResponse response) =>
        response.Status == HttpStatusCode.InternalServerError && response.BodyText().Contains("Unknown session", StringComparison.OrdinalIgnoreCase);

    private void EnsureSuccess(ConsulResponse response, string method, string path)
    {
        if (response.IsSuccess)
        {
            return;
        }

        if (response.Status is HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized)
        {
            throw new UnauthorizedAccessException($"consul at {Address} refused {method} {path} ({(int)response.Status}: {response.BodyText()}); set an ACL token that allows it ({nameof(ConsulStoreOptions)}.{nameof(ConsulStoreOptions.Token)} or {ConsulStoreOptions.TokenVariable})");
        }

        throw Unexpected(response, method, path, $"{(int)response.Status} {response.Status}");
    }

    private InvalidOperationException Unexpected(ConsulResponse response, string method, string path, string what) =>
        new($"consul at {Address} answered {method} {path} with {what}: {response.BodyText()}");

    private T? Parse<T>(ConsulResponse response, JsonTypeInfo<T> type)
    {
        if (response.Body.Length == 0)
        {
            return default;
        }

        try
        {
            return JsonSerializer.Deserialize(response.Body, type);
        }
        catch (JsonException ex)
        {
            throw new InvalidOperationException($"consul at {Address} answered with JSON the driver cannot read ({ex.Message}): {response.BodyText()}", ex);
        }
    }
}

/// <summary>Go duration strings, as Consul's TTL, LockDelay and wait fields read them.</summary>
internal static class GoDuration
{
    /// <summary>Whole seconds as "15s", anything finer as whole milliseconds ("1500ms"), rounded up.</summary>
    public static string Format(TimeSpan value)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
        if (value.Ticks % TimeSpan.TicksPerSecond == 0)
        {
            return ((long)value.TotalSeconds).ToString(CultureInfo.InvariantCulture) + "s";
        }

        var ms = (value.Ticks + TimeSpan.TicksPerMillisecond - 1) / TimeSpan.TicksPerMillisecond;
        return ms.ToString(CultureInfo.InvariantCulture) + "ms";
    }
}

using System.Text.Json.Serialization;

namespace GpuPool.Coordination.Consul.Internal;

// The JSON bodies of the Consul HTTP API endpoints the driver uses, with Consul's own field names
// (PascalCase, as Consul writes and reads them). Byte arrays travel as base64, as Consul's Go []byte does;
// indexes are Consul's uint64 Raft indexes. Only the fields the driver reads are modelled: the parser
// ignores the rest.

/// <summary>A KV entry: <c>GET /v1/kv/:key</c> returns an array of these, and each KV result of a transaction is one.</summary>
internal sealed class ConsulKvPair
{
    public string Key { get; init; } = "";

    /// <summary>Null for an empty value, and in the results of write verbs (Consul blanks them).</summary>
    public byte[]? Value { get; init; }

    public ulong CreateIndex { get; init; }

    public ulong ModifyIndex { get; init; }

    public ulong LockIndex { get; init; }

    public ulong Flags { get; init; }

    /// <summary>The session holding the key's lock; absent or empty when none does.</summary>
    public string? Session { get; init; }
}

/// <summary>One operation of a <c>PUT /v1/txn</c> body: <c>{"KV": {...}}</c>.</summary>
internal sealed class ConsulTxnOp
{
    public ConsulTxnKvOp? KV { get; init; }
}

/// <summary>A KV operation of a transaction. Which of Value, Index and Session a verb reads is in Consul's table of verbs.</summary>
internal sealed class ConsulTxnKvOp
{
    public required string Verb { get; init; }

    public required string Key { get; init; }

    public byte[]? Value { get; init; }

    /// <summary>The ModifyIndex a <c>cas</c>, <c>check-index</c> or <c>delete-cas</c> compares with (0 for <c>cas</c>: "does not exist").</summary>
    public ulong? Index { get; init; }

    public string? Session { get; init; }
}

/// <summary>The body of a transaction's answer: results when it was applied (200), errors when it was rolled back (409).</summary>
internal sealed class ConsulTxnResponse
{
    public List<ConsulTxnResult>? Results { get; init; }

    public List<ConsulTxnError>? Errors { get; init; }
}

internal sealed class ConsulTxnResult
{
    public ConsulKvPair? KV { get; init; }
}

/// <summary>Why one operation failed: <see cref="OpIndex"/> is its position in the request.</summary>
internal sealed class ConsulTxnError
{
    public int OpIndex { get; init; }

    public string What { get; init; } = "";
}

/// <summary>The body of <c>PUT /v1/session/create</c>. TTL and LockDelay are Go duration strings.</summary>
internal sealed class ConsulSessionCreateRequest
{
    public string? Name { get; init; }

    public required string TTL { get; init; }

    public required string Behavior { get; init; }

    public required string LockDelay { get; init; }
}

internal sealed class ConsulSessionCreateResponse
{
    public string ID { get; init; } = "";
}

/// <summary>A session as <c>/v1/session/info</c> and <c>/v1/session/renew</c> return it (LockDelay, a number of nanoseconds there, is not read).</summary>
internal sealed class ConsulSessionInfo
{
    public string ID { get; init; } = "";

    public string? TTL { get; init; }

    public string? Behavior { get; init; }
}

/// <summary>The body of <c>PUT /v1/agent/service/register</c>: one instance with one TTL check.</summary>
internal sealed class ConsulServiceRegistration
{
    public required string ID { get; init; }

    public required string Name { get; init; }

    public required string Address { get; init; }

    public int Port { get; init; }

    public Dictionary<string, string>? Meta { get; init; }

    public required ConsulServiceCheck Check { get; init; }
}

internal sealed class ConsulServiceCheck
{
    public required string CheckID { get; init; }

    public required string Name { get; init; }

    public required string TTL { get; init; }

    /// <summary>The check's status right after registration (Consul starts TTL checks critical otherwise).</summary>
    public required string Status { get; init; }

    public string? DeregisterCriticalServiceAfter { get; init; }
}

/// <summary>One instance as <c>GET /v1/health/service/:service</c> returns it.</summary>
internal sealed class ConsulServiceEntry
{
    public ConsulNode? Node { get; init; }

    public ConsulAgentService? Service { get; init; }

    public List<ConsulHealthCheck>? Checks { get; init; }
}

internal sealed class ConsulNode
{
    public string Node { get; init; } = "";

    public string Address { get; init; } = "";
}

internal sealed class ConsulAgentService
{
    public string ID { get; init; } = "";

    public string Service { get; init; } = "";

    public string Address { get; init; } = "";

    public int Port { get; init; }

    public Dictionary<string, string>? Meta { get; init; }
}

internal sealed class ConsulHealthCheck
{
    public string CheckID { get; init; } = "";

    public string Name { get; init; } = "";

    public string Status { get; init; } = "";

    public string ServiceID { get; init; } = "";
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(List<ConsulKvPair>))]
[JsonSerializable(typeof(List<string>))]
[JsonSerializable(typeof(List<ConsulTxnOp>))]
[JsonSerializable(typeof(ConsulTxnResponse))]
[JsonSerializable(typeof(ConsulSessionCreateRequest))]
[JsonSerializable(typeof(ConsulSessionCreateResponse))]
[JsonSerializable(typeof(List<ConsulSessionInfo>))]
[JsonSerializable(typeof(ConsulServiceRegistration))]
[JsonSerializable(typeof(List<ConsulServiceEntry>))]
internal sealed partial class ConsulJsonContext : JsonSerializerContext;

namespace GpuPool.Coordination.Consul.Internal;

/// <summary>A key's state as read before a write: its ModifyIndex and the session whose lock binds it (null: none).</summary>
internal readonly record struct ConsulKeyState(long ModifyIndex, string? Session);

internal enum ConsulOpRole
{
    /// <summary>One of the caller's checks: its failure names the key in <see cref="TxnResult.FailedChecks"/>.</summary>
    Check,

    /// <summary>The driver's own check that the key is still as it was read: its failure means "read again".</summary>
    Guard,

    /// <summary>A write.</summary>
    Write,
}

/// <summary>One operation of a planned transaction, with what it is for and which check or write it serves.</summary>
internal sealed record ConsulPlannedOp(ConsulTxnOp Op, ConsulOpRole Role, int Source)
{
    public string Verb => Op.KV!.Verb;

    public string Key => Op.KV!.Key;

    public string? Session => Op.KV!.Session;
}

/// <summary>What a rolled-back transaction's errors say, sorted out by the role of each failed operation.</summary>
internal sealed record ConsulTxnFailure(
    IReadOnlyList<string> FailedChecks,
    IReadOnlyList<string> LockSessions,
    bool LockDelay,
    string? PermissionDenied,
    string Summary);

/// <summary>
/// Turns the store's checks and writes into Consul transaction operations, and a rolled-back transaction's errors
/// back into what they mean. Pure functions: the store reads the keys, this decides the verbs.
/// </summary>
/// <remarks>
/// Consul's <c>set</c> and <c>cas</c> keep the session that holds a key, and <c>lock</c> fails on a key another
/// session holds, so a put depends on the key's current holder:
/// <list type="bullet">
/// <item>no session wanted: <c>cas</c> at the read index (0: "does not exist") on a free key, which also guards
/// the read; <c>unlock</c> with the holder's session (which writes the value and frees the key) on a held one;</item>
/// <item>session T wanted: <c>lock</c> with T on a free key or one T holds; <c>unlock</c> with the holder and then
/// <c>lock</c> with T, in one transaction, on a key another session holds.</item>
/// </list>
/// Every verb fails when the key changed holder since it was read, and the store then reads again. With
/// <c>strict</c> (a put with an expected revision) a <c>check-index</c> or <c>check-not-exists</c> guard comes first,
/// so the write happens only on exactly the state that was read.
/// </remarks>
internal static class ConsulTxnPlanner
{
    public const string Cas = "cas";
    public const string Lock = "lock";
    public const string Unlock = "unlock";
    public const string Get = "get";
    public const string Delete = "delete";
    public const string CheckIndex = "check-index";
    public const string CheckNotExists = "check-not-exists";

    /// <summary>The most operations one Consul transaction takes (Consul 1.x before 1.15 allows 64; later ones 128).</summary>
    public const int MaxConsulOperations = 64;

    public static List<ConsulPlannedOp> Plan(IReadOnlyList<TxnCheck> checks, IReadOnlyList<TxnWrite> writes, Func<string, ConsulKeyState?> current, bool strict)
    {
        var ops = new List<ConsulPlannedOp>(checks.Count + writes.Count + 4);
        for (var i = 0; i < checks.Count; i++)
        {
            var check = checks[i];
            ops.Add(new(check.ExpectedModRevision == 0 ? Op(CheckNotExists, check.Key) : Op(CheckIndex, check.Key, index: check.ExpectedModRevision), ConsulOpRole.Check, i));
        }

        for (var i = 0; i < writes.Count; i++)
        {
            AddWrite(ops, writes[i], i, writes[i].IsDelete ? null : current(writes[i].Key), strict);
        }

        return ops;
    }

    private static void AddWrite(List<ConsulPlannedOp> ops, TxnWrite write, int source, ConsulKeyState? current, bool strict)
    {
        if (write.IsDelete)
        {
            ops.Add(new(Op(Delete, write.Key), ConsulOpRole.Write, source));
            return;
        }

        var value = write.Value.ToArray();
        if (write.SessionId is null)
        {
            if (current is not { Session: { } holder } state)
            {
                ops.Add(new(Op(Cas, write.Key, value, index: current?.ModifyIndex ?? 0), ConsulOpRole.Write, source));
                return;
            }

            if (strict)
            {
                ops.Add(new(Op(CheckIndex, write.Key, index: state.ModifyIndex), ConsulOpRole.Guard, source));
            }

            ops.Add(new(Op(Unlock, write.Key, value, session: holder), ConsulOpRole.Write, source));
            return;
        }

        if (strict)
        {
            ops.Add(current is { } read
                ? new(Op(CheckIndex, write.Key, index: read.ModifyIndex), ConsulOpRole.Guard, source)
                : new(Op(CheckNotExists, write.Key), ConsulOpRole.Guard, source));
        }

        if (current is { Session: { } other } && other != write.SessionId)
        {
            ops.Add(new(Op(Unlock, write.Key, value, session: other), ConsulOpRole.Write, source));
        }

        ops.Add(new(Op(Lock, write.Key, value, session: write.SessionId), ConsulOpRole.Write, source));
    }

    /// <summary>Sorts a rolled-back transaction's errors out by the operations they name.</summary>
    public static ConsulTxnFailure Classify(IReadOnlyList<ConsulPlannedOp> ops, IReadOnlyList<ConsulTxnError>? errors)
    {
        var failedChecks = new SortedDictionary<int, string>();
        var lockSessions = new List<string>();
        var lockDelay = false;
        string? permissionDenied = null;
        foreach (var error in errors ?? [])
        {
            if (error.What.Contains("Permission denied", StringComparison.OrdinalIgnoreCase) || error.What.Contains("ACL not found", StringComparison.OrdinalIgnoreCase))
            {
                permissionDenied ??= error.What;
            }

            if ((uint)error.OpIndex >= (uint)ops.Count)
            {
                continue;
            }

            var op = ops[error.OpIndex];
            if (op.Role == ConsulOpRole.Check)
            {
                failedChecks.TryAdd(op.Source, op.Key);
            }
            else if (op.Verb == Lock)
            {
                if (error.What.Contains("lock delay", StringComparison.OrdinalIgnoreCase))
                {
                    lockDelay = true;
                }
                else if (op.Session is { } session && !lockSessions.Contains(session))
                {
                    lockSessions.Add(session);
                }
            }
        }

        var summary = string.Join("; ", (errors ?? []).Take(4).Select(e => $"op {e.OpIndex}: {e.What}"));
        var keys = failedChecks.Values.Distinct(StringComparer.Ordinal).ToList();
        return new ConsulTxnFailure(keys, lockSessions, lockDelay, permissionDenied, summary.Length == 0 ? "no reason given" : summary);
    }

    /// <summary>The highest ModifyIndex the results give <paramref name="key"/>, or 0.</summary>
    public static long IndexOf(IReadOnlyList<ConsulTxnResult>? results, string key)
    {
        ulong max = 0;
        foreach (var result in results ?? [])
        {
            if (result.KV is { } kv && kv.Key == key && kv.ModifyIndex > max)
            {
                max = kv.ModifyIndex;
            }
        }

        return ToRevision(max);
    }

    public static long ToRevision(ulong index) => index > long.MaxValue ? long.MaxValue : (long)index;

    private static ConsulTxnOp Op(string verb, string key, byte[]? value = null, long? index = null, string? session = null) =>
        new() { KV = new ConsulTxnKvOp { Verb = verb, Key = key, Value = value, Index = index is { } i ? (ulong)i : null, Session = session } };
}

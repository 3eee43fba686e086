namespace GpuPool.Coordination;

/// <summary>The checks every driver applies to a transaction before it touches the store, so all drivers refuse the same things.</summary>
public static class TxnValidation
{
    public static void Validate(IReadOnlyList<TxnCheck> checks, IReadOnlyList<TxnWrite> writes)
    {
        ArgumentNullException.ThrowIfNull(checks);
        ArgumentNullException.ThrowIfNull(writes);
        if (checks.Count + writes.Count > TxnLimits.MaxOperations)
        {
            throw new ArgumentException($"a transaction may hold at most {TxnLimits.MaxOperations} checks and writes together, not {checks.Count + writes.Count}");
        }

        foreach (var check in checks)
        {
            ArgumentException.ThrowIfNullOrEmpty(check.Key, "check key");
            if (check.ExpectedModRevision < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(checks), $"the expected revision of '{check.Key}' must not be negative");
            }
        }

        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var write in writes)
        {
            ArgumentNullException.ThrowIfNull(write);
            ArgumentException.ThrowIfNullOrEmpty(write.Key, "write key");
            if (!keys.Add(write.Key))
            {
                throw new ArgumentException($"a transaction writes '{write.Key}' twice");
            }
        }
    }
}

using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Policy;

/// <summary>The classes a pool starts with, and the checks on names and values that admins set.</summary>
public static class PriorityClasses
{
    public const string DefaultName = "normal";

    /// <summary>Seeded when the store holds no class: a preemptible low class below two that are not.</summary>
    public static IReadOnlyList<PriorityClass> Defaults { get; } =
    [
        new PriorityClass { Name = "low", Value = 0, Preemptible = true },
        new PriorityClass { Name = DefaultName, Value = 100, Preemptible = false },
        new PriorityClass { Name = "high", Value = 1000, Preemptible = false },
    ];

    /// <summary>
    /// A class's minimum runtime is at most the longest lease TTL the scheduler grants: it is a short guarantee
    /// against churn, and a longer one would make a preemptible class unpreemptible in effect.
    /// </summary>
    public static void ValidateMinRuntime(PriorityClass cls, TimeSpan maxLeaseTtl)
    {
        ArgumentNullException.ThrowIfNull(cls);
        if (TimeSpan.FromSeconds(cls.MinRuntimeSeconds) > maxLeaseTtl)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"the minimum runtime of priority class '{cls.Name}' ({cls.MinRuntimeSeconds} s) is longer than this scheduler's longest lease TTL ({(long)maxLeaseTtl.TotalSeconds} s): give at most that, or 0 for none");
        }
    }

    public static void ValidateName(string name, string what, int maxLength = 64)
    {
        if (string.IsNullOrEmpty(name) || name.Length > maxLength || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"{what} '{name}' must be 1-{maxLength} letters, digits, '-', '_' or '.'");
        }
    }
}

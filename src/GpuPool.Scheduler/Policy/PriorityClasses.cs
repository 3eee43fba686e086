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

    public static void ValidateName(string name, string what, int maxLength = 64)
    {
        if (string.IsNullOrEmpty(name) || name.Length > maxLength || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"{what} '{name}' must be 1-{maxLength} letters, digits, '-', '_' or '.'");
        }
    }
}

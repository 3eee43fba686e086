using System.Globalization;

namespace GpuPool.Protocol;

/// <summary>
/// Parses and prints byte sizes the way people write them (512MiB, 2GiB, 1.5G, 4096), and converts the device times and
/// shares of the device that the wire carries as whole numbers (nanoseconds, parts per million).
/// </summary>
public static class Units
{
    private static readonly (string Suffix, ulong Factor)[] Suffixes =
    [
        ("KIB", 1UL << 10), ("MIB", 1UL << 20), ("GIB", 1UL << 30), ("TIB", 1UL << 40),
        ("KB", 1000UL), ("MB", 1000UL * 1000), ("GB", 1000UL * 1000 * 1000), ("TB", 1000UL * 1000 * 1000 * 1000),
        ("K", 1UL << 10), ("M", 1UL << 20), ("G", 1UL << 30), ("T", 1UL << 40), ("B", 1UL),
    ];

    public static bool TryParseBytes(string? text, out ulong bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var s = text.Trim().ToUpperInvariant();
        ulong factor = 1;
        foreach (var (suffix, f) in Suffixes)
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal))
            {
                s = s[..^suffix.Length].TrimEnd();
                factor = f;
                break;
            }
        }

        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < 0 || double.IsNaN(value))
        {
            return false;
        }

        var total = value * factor;
        if (total > ulong.MaxValue / 2)
        {
            return false;
        }

        bytes = (ulong)Math.Round(total);
        return true;
    }

    public static string FormatBytes(ulong bytes)
    {
        string[] names = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        var i = 0;
        while (value >= 1024 && i < names.Length - 1)
        {
            value /= 1024;
            i++;
        }

        return i == 0 ? $"{bytes} B" : value.ToString(value >= 100 ? "0" : "0.#", CultureInfo.InvariantCulture) + " " + names[i];
    }

    public static ulong ToNanoseconds(TimeSpan time) => time <= TimeSpan.Zero ? 0 : (ulong)time.Ticks * 100;

    public static TimeSpan FromNanoseconds(ulong nanoseconds) => TimeSpan.FromTicks((long)Math.Min(nanoseconds / 100, long.MaxValue));

    /// <summary>A fraction (1 = the whole device) in parts per million, clamped to 0..10^6.</summary>
    public static uint ToPpm(double fraction) => (uint)Math.Round(Math.Clamp(fraction, 0, 1) * 1e6);

    public static double FromPpm(ulong ppm) => ppm / 1e6;

    /// <summary>A device time as people read it: 850 ms, 12.4 s, 3 min 20 s, 2 h 5 min.</summary>
    public static string FormatDuration(TimeSpan time) => time.TotalSeconds switch
    {
        < 1 => $"{time.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture)} ms",
        < 60 => $"{time.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s",
        < 3600 => $"{(int)time.TotalMinutes} min {time.Seconds} s",
        _ => $"{(int)time.TotalHours} h {time.Minutes} min",
    };
}

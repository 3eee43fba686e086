using System.Globalization;

namespace GpuPool.Protocol;

/// <summary>Parses and prints byte sizes the way people write them: 512MiB, 2GiB, 1.5G, 4096.</summary>
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
}

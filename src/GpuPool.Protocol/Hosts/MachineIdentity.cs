using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;

namespace GpuPool.Protocol.Hosts;

/// <summary>
/// Which machine this process runs on, for deciding whether a broker's Unix socket is this client's to use: a host
/// name can be shared by two machines, a machine id cannot. The id is systemd's (<c>/etc/machine-id</c>), else
/// D-Bus's (<c>/var/lib/dbus/machine-id</c>), else a random one made once and kept in a file, so that it stays the
/// same across restarts.
/// </summary>
public static partial class MachineIdentity
{
    /// <summary>Where systemd and D-Bus keep the machine id, in the order they are read.</summary>
    public static readonly IReadOnlyList<string> SystemFiles = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

    /// <summary>The file a made-up id is kept in, inside a state directory.</summary>
    public const string StateFileName = "machine-id";

    /// <summary>The file a made-up id is kept in when there is no state directory: shared by every process of the machine.</summary>
    public static readonly string SharedFile = Path.Combine("/tmp", "gpupool-machine-id");

    private static readonly ConcurrentDictionary<string, string> Known = new(StringComparer.Ordinal);

    /// <summary>
    /// This machine's id: the system's, else the one kept in <paramref name="stateDirectory"/> (or in
    /// <see cref="SharedFile"/> when null), made there on first use. Read once per directory and process.
    /// </summary>
    public static string Get(string? stateDirectory = null)
    {
        var keptIn = stateDirectory is { Length: > 0 } ? Path.Combine(stateDirectory, StateFileName) : SharedFile;
        return Known.GetOrAdd(keptIn, static path => Resolve(SystemFiles, path));
    }

    /// <summary>The id the first readable file of <paramref name="systemFiles"/> holds, else the one kept in <paramref name="keptIn"/> (made if missing).</summary>
    internal static string Resolve(IReadOnlyList<string> systemFiles, string keptIn)
    {
        foreach (var file in systemFiles)
        {
            if (TryRead(file) is { } id)
            {
                return id;
            }
        }

        return ReadOrMake(keptIn);
    }

    /// <summary>Whether process <paramref name="processId"/> of this machine is running (its /proc entry, where there is one).</summary>
    public static bool ProcessIsAlive(uint processId)
    {
        if (Directory.Exists("/proc/self"))
        {
            return Directory.Exists("/proc/" + processId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        try
        {
            using var process = System.Diagnostics.Process.GetProcessById((int)processId);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Whether <paramref name="text"/> is a machine id as systemd writes one (hex digits; an empty or "uninitialized" file is not).</summary>
    internal static bool IsValid(string text)
        => text.Length is >= 16 and <= 64 && text.All(char.IsAsciiHexDigit);

    private static string? TryRead(string path)
    {
        try
        {
            var text = File.ReadAllText(path).Trim().ToLowerInvariant();
            return IsValid(text) ? text : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The id kept in <paramref name="path"/>, or a fresh random one written there. Two processes making one at the
    /// same time agree: each writes its own temporary file and moves it into place only if none is there yet. When
    /// the file cannot be written the id lives only as long as this process, and clients on this machine take TCP.
    /// </summary>
    private static string ReadOrMake(string path)
    {
        if (TryRead(path) is { } kept)
        {
            return kept;
        }

        var made = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        // A temporary file of this attempt's own: two threads of one process must not share one (with the process id
        // alone, one thread's write replaced another's before its move, and that thread returned an id it had not kept).
        var temp = path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "." + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)) + ".tmp";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(temp, made + "\n");
            PlaceIfAbsent(temp, path);
            TryDelete(temp);
            return made;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);

            // Another process moved its id into place first (or the file cannot be written): theirs, if there is one.
            return TryRead(path) ?? made;
        }
    }

    /// <summary>
    /// Puts the written file <paramref name="temp"/> at <paramref name="path"/> only if nothing is there, in one atomic
    /// step: link(2), which fails when the name exists (File.Move without overwrite checks first and then renames, so
    /// two callers could both succeed, the second replacing the first's id). An IOException when the name is taken.
    /// </summary>
    private static void PlaceIfAbsent(string temp, string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            File.Move(temp, path, overwrite: false);
            return;
        }

        if (Link(temp, path) != 0)
        {
            throw new IOException($"{path} could not be made (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}): another process made it first, or it cannot be written");
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc.so.6", EntryPoint = "link", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int Link(string existing, string created);

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Nothing was written, or it cannot be removed: a stray temporary file, no harm.
        }
    }
}

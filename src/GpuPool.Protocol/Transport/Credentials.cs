using System.Buffers;
using System.Text;

namespace GpuPool.Protocol.Transport;

/// <summary>The lease id and token that a hello or a join carries: their lengths in its fixed fields, the two strings (UTF-8) as its payload.</summary>
internal static class Credentials
{
    public static (byte[] Lease, byte[] Token) Encode(string leaseId, string token)
    {
        ArgumentNullException.ThrowIfNull(leaseId);
        ArgumentNullException.ThrowIfNull(token);
        return (Encoding.UTF8.GetBytes(leaseId), Encoding.UTF8.GetBytes(token));
    }

    /// <summary>The two strings of the frame's payload; false, with a reason naming <paramref name="what"/>, when the lengths do not add up.</summary>
    public static bool TryDecode(in Frame frame, ushort leaseLength, ushort tokenLength, string what, out string leaseId, out string token, out string? error)
    {
        leaseId = token = "";
        if (leaseLength + tokenLength != frame.Payload.Length)
        {
            error = $"{what}: lease id ({leaseLength}) and token ({tokenLength}) lengths do not add up to the payload ({frame.Payload.Length})";
            return false;
        }

        error = null;
        var text = frame.Payload.ToArray();
        leaseId = Encoding.UTF8.GetString(text, 0, leaseLength);
        token = Encoding.UTF8.GetString(text, leaseLength, tokenLength);
        return true;
    }
}

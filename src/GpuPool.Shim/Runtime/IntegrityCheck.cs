using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Runtime;

/// <summary>
/// The CUDA 12 runtimes check that they talk to NVIDIA's driver: they pass a version and the time, and expect an
/// HMAC-MD2 (RFC 1319 and RFC 2104, 16-byte blocks) under a fixed key of the process id, thread, the driver
/// version, the addresses of two tables and of this function, and each device's UUID and PCI location. The
/// layout of that message is ZLUDA's finding; the hash is the textbook one, written here. Runtime versions ending
/// in 0 or 1 expect fixed answers.
/// </summary>
internal static unsafe class IntegrityCheck
{
    private static ReadOnlySpan<byte> Key => [0x14, 0x6A, 0xDD, 0xAE, 0x53, 0xA9, 0xA7, 0x52, 0xAA, 0x08, 0x41, 0x36, 0x0B, 0xF5, 0x5A, 0x9F];

    [UnmanagedCallersOnly]
    public static CuResult Answer(uint version, ulong unixSeconds, ulong* result)
    {
        try
        {
            if (result is null)
            {
                return CuResult.InvalidValue;
            }

            switch (version % 10)
            {
                case 0:
                    result[0] = 0x3341181C03CB675C;
                    result[1] = 0x8ED383AA1F4CD1E8;
                    return CuResult.Success;
                case 1:
                    result[0] = 0x1841181C03CB675C;
                    result[1] = 0x8ED383AA1F4CD1E8;
                    return CuResult.Success;
            }

            var driver = Driver.Instance;
            var tables = ExportTables.Tables;
            var message = new Message
            {
                DriverVersion = (uint)Driver.Version,
                Version = version,
                Process = (uint)Environment.ProcessId,
                Thread = (uint)((delegate* unmanaged<nuint>)Libc.Function("pthread_self"))(),
                RuntimeTable = tables["{6BD5FB6C-5BF4-E74A-8987-D93912FD9DF9}"].Address,
                CheckTable = tables["{D4082055-BDE6-704B-8D34-BA123C66E1F2}"].Address,
                Function = ((nint*)tables["{D4082055-BDE6-704B-8D34-BA123C66E1F2}"].Address)[1],
                UnixSeconds = unixSeconds,
            };
            var device = new DeviceIdentity { PciDomain = (int)driver.Device.Attribute(50), PciBus = (int)driver.Device.Attribute(33), PciDevice = (int)driver.Device.Attribute(34) };
            driver.Device.Uuid.CopyTo(new Span<byte>(device.Uuid, 16));

            Span<byte> digest = stackalloc byte[16];
            Span<byte> input = stackalloc byte[sizeof(Message) + sizeof(DeviceIdentity)];
            new ReadOnlySpan<byte>(&message, sizeof(Message)).CopyTo(input);
            new ReadOnlySpan<byte>(&device, sizeof(DeviceIdentity)).CopyTo(input[sizeof(Message)..]);
            Hmac(Key, input, digest);
            result[0] = BitConverter.ToUInt64(digest);
            result[1] = BitConverter.ToUInt64(digest[8..]);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("integrity check", ex);
        }
    }

    /// <summary>HMAC over MD2 with a 16-byte key (MD2's block size): MD2(K^opad || MD2(K^ipad || message)).</summary>
    internal static void Hmac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> message, Span<byte> digest)
    {
        Span<byte> pad = stackalloc byte[16];
        var inner = new Md2();
        Xor(key, 0x36, pad);
        inner.Update(pad);
        inner.Update(message);

        Span<byte> innerDigest = stackalloc byte[16];
        inner.Final(innerDigest);

        var outer = new Md2();
        Xor(key, 0x5C, pad);
        outer.Update(pad);
        outer.Update(innerDigest);
        outer.Final(digest);
    }

    private static void Xor(ReadOnlySpan<byte> key, byte mask, Span<byte> into)
    {
        for (var i = 0; i < 16; i++)
        {
            into[i] = (byte)(key[i] ^ mask);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Message
    {
        public uint DriverVersion;
        public uint Version;
        public uint Process;
        public uint Thread;
        public nint RuntimeTable;
        public nint CheckTable;
        public nint Function;
        public ulong UnixSeconds;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct DeviceIdentity
    {
        public fixed byte Uuid[16];
        public int PciDomain;
        public int PciBus;
        public int PciDevice;
    }
}

/// <summary>MD2 (RFC 1319): 16-byte blocks, a 48-byte state, a running checksum.</summary>
internal unsafe struct Md2
{
    private State _s;

    public void Update(ReadOnlySpan<byte> data)
    {
        foreach (var b in data)
        {
            _s.Block[_s.Count] = b;
            _s.Count++;
            if (_s.Count == 16)
            {
                Compress();
                _s.Count = 0;
            }
        }
    }

    public void Final(Span<byte> digest)
    {
        var padding = (byte)(16 - _s.Count);
        Span<byte> pad = stackalloc byte[16];
        pad[..padding].Fill(padding);
        Update(pad[..padding]);
        Span<byte> checksum = stackalloc byte[16];
        for (var i = 0; i < 16; i++)
        {
            checksum[i] = _s.Checksum[i];
        }

        Update(checksum);
        for (var i = 0; i < 16; i++)
        {
            digest[i] = _s.X[i];
        }
    }

    private void Compress()
    {
        var l = _s.Checksum[15];
        for (var j = 0; j < 16; j++)
        {
            _s.Checksum[j] ^= Pi[_s.Block[j] ^ l];
            l = _s.Checksum[j];
        }

        for (var j = 0; j < 16; j++)
        {
            _s.X[16 + j] = _s.Block[j];
            _s.X[32 + j] = (byte)(_s.Block[j] ^ _s.X[j]);
        }

        byte t = 0;
        for (var round = 0; round < 18; round++)
        {
            for (var k = 0; k < 48; k++)
            {
                t = _s.X[k] ^= Pi[t];
            }

            t = (byte)(t + round);
        }
    }

    private unsafe struct State
    {
        public fixed byte X[48];
        public fixed byte Checksum[16];
        public fixed byte Block[16];
        public int Count;
    }

    /// <summary>RFC 1319's permutation of 0..255 built from the digits of pi.</summary>
    private static ReadOnlySpan<byte> Pi =>
    [
        41, 46, 67, 201, 162, 216, 124, 1, 61, 54, 84, 161, 236, 240, 6, 19,
        98, 167, 5, 243, 192, 199, 115, 140, 152, 147, 43, 217, 188, 76, 130, 202,
        30, 155, 87, 60, 253, 212, 224, 22, 103, 66, 111, 24, 138, 23, 229, 18,
        190, 78, 196, 214, 218, 158, 222, 73, 160, 251, 245, 142, 187, 47, 238, 122,
        169, 104, 121, 145, 21, 178, 7, 63, 148, 194, 16, 137, 11, 34, 95, 33,
        128, 127, 93, 154, 90, 144, 50, 39, 53, 62, 204, 231, 191, 247, 151, 3,
        255, 25, 48, 179, 72, 165, 181, 209, 215, 94, 146, 42, 172, 86, 170, 198,
        79, 184, 56, 210, 150, 164, 125, 182, 118, 252, 107, 226, 156, 116, 4, 241,
        69, 157, 112, 89, 100, 113, 135, 32, 134, 91, 207, 101, 230, 45, 168, 2,
        27, 96, 37, 173, 174, 176, 185, 246, 28, 70, 97, 105, 52, 64, 126, 15,
        85, 71, 163, 35, 221, 81, 175, 58, 195, 92, 249, 206, 186, 197, 234, 38,
        44, 83, 13, 110, 133, 40, 132, 9, 211, 223, 205, 244, 65, 129, 77, 82,
        106, 220, 55, 200, 108, 193, 171, 250, 36, 225, 123, 8, 12, 189, 177, 74,
        120, 136, 149, 139, 227, 99, 232, 109, 233, 203, 213, 254, 59, 0, 29, 57,
        242, 239, 183, 14, 102, 88, 208, 228, 166, 119, 114, 248, 235, 117, 75, 10,
        49, 68, 80, 180, 143, 237, 31, 26, 219, 153, 141, 51, 159, 17, 131, 20,
    ];
}

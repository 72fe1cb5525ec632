import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;

/**
 * Verifies the signatures of a MailLaser webhook request, both schemes, with
 * the Java standard library only (docs/webhook.md). Java 17, no build:
 *
 * <pre>
 *   WEBHOOK_SECRET=... java Verify.java maillaser HEADERS BODY
 *   WEBHOOK_SECRET=whsec_... java Verify.java standard HEADERS BODY
 * </pre>
 *
 * HEADERS is a file of {@code Name: value} lines as in HTTP, BODY the raw
 * request body. Prints {@code valid} and exits 0, or prints {@code invalid}
 * and exits 1. The verification itself is {@link WebhookSignatures}.
 */
public final class Verify {
    public static void main(String[] args) throws IOException {
        String secret = System.getenv("WEBHOOK_SECRET");
        if (args.length != 3 || !(args[0].equals("maillaser") || args[0].equals("standard"))
                || secret == null || secret.isEmpty()) {
            System.err.println("usage: WEBHOOK_SECRET=... java Verify.java maillaser|standard HEADERS BODY");
            System.exit(2);
        }
        Map<String, String> headers = new HashMap<>();
        for (String line : Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8)) {
            int colon = line.indexOf(':');
            if (colon > 0) {
                headers.put(line.substring(0, colon).trim(), line.substring(colon + 1).trim());
            }
        }
        byte[] body = Files.readAllBytes(Path.of(args[2]));
        boolean valid = args[0].equals("maillaser")
                ? WebhookSignatures.verifyMailLaserSignature(
                        secret.getBytes(StandardCharsets.UTF_8), headers, body)
                : WebhookSignatures.verifyStandardWebhook(secret, headers, body);
        System.out.println(valid ? "valid" : "invalid");
        System.exit(valid ? 0 : 1);
    }
}

final class WebhookSignatures {
    /** Seconds a timestamp may be away from our clock (replays). */
    static final long TOLERANCE = 300;

    /**
     * {@code X-MailLaser-Signature-256: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>}.
     * {@code headers} maps header names (any case) to values; {@code body} is
     * the raw request body, before any JSON parsing.
     */
    static boolean verifyMailLaserSignature(byte[] secret, Map<String, String> headers, byte[] body) {
        String timestamp = header(headers, "x-maillaser-timestamp");
        String signature = header(headers, "x-maillaser-signature-256");
        if (!fresh(timestamp)) {
            return false;
        }
        byte[] mac = hmacSha256(secret, timestamp + ".", body);
        byte[] expected = ("sha256=" + HexFormat.of().formatHex(mac)).getBytes(StandardCharsets.US_ASCII);
        return MessageDigest.isEqual(expected, signature.getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Standard Webhooks: {@code webhook-signature} holds space-separated
     * {@code v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>}
     * entries (several during a key rotation); any one matching is enough.
     * {@code secret} is {@code whsec_} followed by the base64 key.
     */
    static boolean verifyStandardWebhook(String secret, Map<String, String> headers, byte[] body) {
        String id = header(headers, "webhook-id");
        String timestamp = header(headers, "webhook-timestamp");
        if (id.isEmpty() || !fresh(timestamp)) {
            return false;
        }
        byte[] key = Base64.getDecoder().decode(secret.replaceFirst("^whsec_", ""));
        byte[] expected = hmacSha256(key, id + "." + timestamp + ".", body);
        for (String entry : header(headers, "webhook-signature").split(" ")) {
            int comma = entry.indexOf(',');
            if (comma < 0 || !entry.substring(0, comma).equals("v1")) {
                continue;
            }
            try {
                byte[] offered = Base64.getDecoder().decode(entry.substring(comma + 1));
                if (MessageDigest.isEqual(expected, offered)) {
                    return true;
                }
            } catch (IllegalArgumentException notBase64) {
                // not ours: try the next entry
            }
        }
        return false;
    }

    /** The value of header {@code name} (lower case), whatever case {@code headers} uses. */
    private static String header(Map<String, String> headers, String name) {
        for (Map.Entry<String, String> entry : headers.entrySet()) {
            if (entry.getKey().equalsIgnoreCase(name)) {
                return entry.getValue();
            }
        }
        return "";
    }

    private static boolean fresh(String timestamp) {
        return timestamp.matches("[0-9]{1,18}")
                && Math.abs(System.currentTimeMillis() / 1000 - Long.parseLong(timestamp)) <= TOLERANCE;
    }

    private static byte[] hmacSha256(byte[] key, String prefix, byte[] body) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            mac.update(prefix.getBytes(StandardCharsets.UTF_8));
            return mac.doFinal(body);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("every Java runtime has HmacSHA256", e);
        }
    }
}

import { pino, type Logger } from "pino";

/** createLogger gives a service its root logger: JSON lines on stdout, one field naming the service. */
export function createLogger(service: string, level: string): Logger {
  return pino({ level, base: { service } });
}

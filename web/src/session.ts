// The logged-in console user.
import type { User } from './api';

let user: User | null = null;

export function currentUser(): User | null {
  return user;
}

export function setCurrentUser(u: User | null): void {
  user = u;
}

export function isStaff(u: User | null = user): boolean {
  return !!u && (u.role === 'admin' || u.role === 'supervisor');
}

export function homePath(u: User | null = user): string {
  if (!u) return '/login';
  return isStaff(u) ? '/admin/agents' : '/phone';
}
